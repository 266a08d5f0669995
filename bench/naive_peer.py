"""The naive peer of BENCH.md: what a team writes in an afternoon.

psycopg2 logical replication on a test_decoding slot, one `requests` POST per
change over a keep-alive session, feedback after every message. Prints the
number of changes posted and the seconds it took, as JSON, once `--changes`
changes went out.

    python bench/naive_peer.py --dsn postgres://... --slot naive --url http://127.0.0.1:8080/hook --changes 20000
"""

import argparse
import json
import time

import psycopg2
import psycopg2.extras
import requests


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--slot", required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--changes", type=int, required=True)
    args = parser.parse_args()

    conn = psycopg2.connect(args.dsn, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    cur = conn.cursor()
    cur.start_replication(slot_name=args.slot, decode=True)
    session = requests.Session()
    posted = 0
    started = time.monotonic()

    class Done(Exception):
        pass

    def consume(msg):
        nonlocal posted
        line = msg.payload
        if line.startswith("table "):
            session.post(args.url, json={"change": line}, timeout=10).raise_for_status()
            posted += 1
        msg.cursor.send_feedback(flush_lsn=msg.data_start)
        if posted >= args.changes:
            raise Done()

    try:
        cur.consume_stream(consume)
    except Done:
        pass
    print(json.dumps({"changes": posted, "seconds": time.monotonic() - started}))


if __name__ == "__main__":
    main()
