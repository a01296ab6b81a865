-- wrk script: an empty-bodied JSON POST (cookies and the CSRF header come from -H).
wrk.method = "POST"
wrk.body = ""
wrk.headers["Content-Type"] = "application/json"
