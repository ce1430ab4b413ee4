"""Tick cost against table size: 1,000 due enrollments among 10,000, and among 1,000,000 (PostgreSQL).

Prints the median time of one tick over the 1,000 due rows at each size, and the ratio.
Target: under 1.5x. Run: .venv/bin/python bench/tick_scaling.py [--big 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from bench.common import START, seeded_app, timed  # noqa: E402
from outreach.scheduler import tick  # noqa: E402
from outreach.sequences import engine as eng  # noqa: E402
from outreach.service import state_to_json  # noqa: E402


def measure(total: int, due: int) -> float:
    state = json.dumps(state_to_json(eng.State.start(START - dt.timedelta(hours=1), 1)))
    with seeded_app(2525, total, due, START) as (app, url):

        def reset() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("DELETE FROM event")
                conn.execute("DELETE FROM message")
                conn.execute("DELETE FROM thread")
                conn.execute("UPDATE enrollment SET phase = 'active', state = %s::json, next_action_at = %s WHERE id IN (SELECT id FROM enrollment ORDER BY id LIMIT %s)", (state, START, due))

        def one_tick() -> None:
            result = tick(app, now=START + dt.timedelta(minutes=1), batch=due)
            assert result.enrollments == due and len(result.messages) == due, result
            reset()

        reset()
        return timed(one_tick, repeat=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--due", type=int, default=1000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args()
    small = measure(args.small, args.due)
    big = measure(args.big, args.due)
    print(f"tick over {args.due} due among {args.small:>9,}: {small * 1000:8.1f} ms ({args.due / small:,.0f} enrollments/s)")
    print(f"tick over {args.due} due among {args.big:>9,}: {big * 1000:8.1f} ms ({args.due / big:,.0f} enrollments/s)")
    print(f"ratio big/small: {big / small:.2f}x (target < 1.5x)")


if __name__ == "__main__":
    main()
