-- GET PATH_PREFIX{id} (a console page) for ids drawn at random from ids.txt, with the
-- session cookie; PATH_PREFIX alone (no id) when IDS_FILE is empty.
local ids = {}
if os.getenv("IDS_FILE") ~= "" then
  for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
end
local cookie = "steward_session=" .. os.getenv("SESSION")
local prefix = os.getenv("PATH_PREFIX")
math.randomseed(42)
request = function()
  local path = prefix
  if #ids > 0 then path = prefix .. ids[math.random(#ids)] end
  return wrk.format("GET", path, { ["Cookie"] = cookie })
end
