-- POST /v1/subjects/lookup by email (the JSON search beside the console's), with a token.
local emails = {}
for line in io.lines(os.getenv("EMAILS_FILE")) do emails[#emails + 1] = line end
local auth = "Bearer " .. os.getenv("TOKEN")
math.randomseed(42)
request = function()
  local body = '{"email": "' .. emails[math.random(#emails)] .. '"}'
  return wrk.format("POST", "/v1/subjects/lookup", { ["Authorization"] = auth, ["Content-Type"] = "application/json" }, body)
end
