-- GET /v1/subjects/{id} for ids drawn at random from ids.txt, with a bearer token.
local ids = {}
for line in io.lines(os.getenv("IDS_FILE")) do ids[#ids + 1] = line end
local auth = "Bearer " .. os.getenv("TOKEN")
math.randomseed(42)
request = function()
  return wrk.format("GET", "/v1/subjects/" .. ids[math.random(#ids)], { ["Authorization"] = auth })
end
