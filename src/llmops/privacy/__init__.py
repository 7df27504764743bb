"""Privacy: where one person's data is (``report``) and removing it everywhere (``erase``).

Owns subject reports and erasure across the request log, feedback, online-evaluation rows, dataset
versions derived from the log (rewritten without the person's rows, the old bytes purged),
evaluation results over those versions, and the model versions trained on them (flagged, since
weights cannot forget). Imports ``store``, ``data``, ``registry`` and ``tracking``; never serving
or orchestration packages.
"""
