"""A local stand-in of Cloud Tasks v2's REST API (ghl_bridge/cloudtasks_standin/app.py): queues, named tasks with
dedup, HTTP targets dispatched with Cloud Tasks' concurrency, rate, retries and headers."""
