-- GET /healthz with the same bearer header as the subject reads, so requests are alike in size.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
