-- POST /v1/subjects/batch with the body in BATCH_FILE (1,000 subjects).
local f = assert(io.open(os.getenv("BATCH_FILE"), "rb"))
local body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
