-- POST /find (the console's search by email) with the session cookie and its CSRF token,
-- for emails drawn at random from EMAILS_FILE.
local emails = {}
for line in io.lines(os.getenv("EMAILS_FILE")) do emails[#emails + 1] = line end
local cookie = "steward_session=" .. os.getenv("SESSION")
local csrf = os.getenv("CSRF")
math.randomseed(42)
local function enc(s) return (s:gsub("[^%w%-%._]", function(c) return string.format("%%%02X", string.byte(c)) end)) end
request = function()
  local body = "csrf=" .. csrf .. "&by=email&term=" .. enc(emails[math.random(#emails)])
  return wrk.format("POST", "/find", { ["Cookie"] = cookie, ["Content-Type"] = "application/x-www-form-urlencoded" }, body)
end
