"""`python -m orchestration.bench` (`make bench`): every benchmark, one JSON line per result.

1. World generation at 100,000 and 1,000,000 customers (seconds, rows, peak memory).
2. The pipeline on a 100,000-customer world: ingest per source, quality gate, dbt build, for
   the backfill and for one daily incremental run (seconds, rows per second, peak memory).
3. The campaign renderer under its limits (contacts per second, the deadline's cost, the
   runaway templates refused).
4. The predictive lifecycle backtest on a 5,000-customer world (fit on days 1..60, compare
   with days 61..90): AUC of the model, the lifecycle stage and the recency score side by
   side, calibration by decile, and `omni predict`'s seconds and peak memory.
5. Dispatch under a provider's rate limit: requests answered 429 per second, per channel.
"""

import sys

from orchestration.bench import dispatch, generation, pipeline, predictions, rendering

print("# world generation", flush=True)
generation.run((100_000, 1_000_000))
print("# pipeline on 100,000 customers", flush=True)
pipeline.run(100_000)
print("# campaign rendering under its limits", flush=True)
rendering.run()
print("# predictive lifecycle backtest on 5,000 customers", flush=True)
predictions.run_and_print(5_000)
print("# dispatch under a rate limit of 20 requests per second", flush=True)
dispatch.run()
sys.exit(0)
