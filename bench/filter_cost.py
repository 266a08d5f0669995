"""Cost of row filters (README "Row filters"): the statement walhook sends per
write batch (src/store/filters.rs, EVALUATE) over a batch of organisation
documents, against the same parameters shipped and unnested without
evaluation, and with the documents only parsed as jsonb.

    target/test-venv/bin/python bench/filter_cost.py "host=127.0.0.1 port=5432 user=postgres dbname=postgres" [events]

Needs psycopg2 (tests/py/requirements.txt) and any PostgreSQL 15+; it creates
nothing (prepared statements only).
"""
import json, sys, time, uuid, psycopg2
N_EVENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 100
ITER = 300
conn = psycopg2.connect(sys.argv[1]); conn.autocommit = True
cur = conn.cursor()
def org(i, status):
    return {"organisation_id": str(uuid.uuid4()), "status": status, "organisation_name": f"Org {i}",
            "created_on": "2024-12-12T17:38:03.850Z", "legal_entity_name": f"Org {i} Ltd",
            "country_of_registration": "GB", "company_register": "Companies House", "size": "large",
            "registration_number": f"{i:08d}", "registered_name": f"Org {i} Limited",
            "address_line1": f"{i} High Street", "city": "London", "postcode": "EC1A 1AA", "country": "GB",
            "requires_participant_terms_and_conditions_signing": False, "logo_uri": "https://logo.example/x.png",
            "flags": [], "revision": i}
docs = []
for i in range(N_EVENTS):
    old = org(i, "active"); new = dict(old, status="suspended" if i % 10 == 0 else "active", revision=i + 1)
    changed = [k for k in new if new[k] != old[k]]
    docs.append(json.dumps({"new": new, "old": old, "changed": changed, "type": "organisation.updated",
                            "apiresource": f"/organisations/{new['organisation_id']}"}))
print(f"document: {len(docs[0])} bytes")
filters = {
  "status became suspended": '$.new.status == "suspended" && $.old.status != "suspended"',
  "changed has email": 'exists($.changed ? (@ == "email"))',
  "type prefix": '$.type starts with "organisation."',
}
cur.execute("""PREPARE evaluate(text[], int4[], text[]) AS
SELECT jsonb_path_match(d.document::jsonb, c.filter::jsonpath, '{}', true)
  FROM unnest($2::int4[], $3::text[]) WITH ORDINALITY AS c(document, filter, n)
  JOIN unnest($1::text[]) WITH ORDINALITY AS d(document, i) ON d.i = c.document
 ORDER BY c.n""")
cur.execute("""PREPARE ship(text[], int4[], text[]) AS
SELECT c.n FROM unnest($2::int4[], $3::text[]) WITH ORDINALITY AS c(document, filter, n)
  JOIN unnest($1::text[]) WITH ORDINALITY AS d(document, i) ON d.i = c.document ORDER BY c.n""")
cur.execute("""PREPARE parse(text[], int4[], text[]) AS
SELECT d.document::jsonb IS NOT NULL AND c.filter <> '' FROM unnest($2::int4[], $3::text[]) WITH ORDINALITY AS c(document, filter, n)
  JOIN unnest($1::text[]) WITH ORDINALITY AS d(document, i) ON d.i = c.document ORDER BY c.n""")
def run(name, args):
    for _ in range(20): cur.execute(name, args); cur.fetchall()
    t = time.perf_counter()
    for _ in range(ITER): cur.execute(name, args); cur.fetchall()
    return (time.perf_counter() - t) / ITER * 1e6
idx = list(range(1, N_EVENTS + 1))
for label, f in filters.items():
    args = (docs, idx, [f] * N_EVENTS)
    e = run("EXECUTE evaluate(%s, %s, %s)", args)
    s = run("EXECUTE ship(%s, %s, %s)", args)
    p = run("EXECUTE parse(%s, %s, %s)", args)
    print(f"   parsing the documents as jsonb: {(p - s) / N_EVENTS:5.1f} µs per event")
    print(f"{label:26s} batch of {N_EVENTS}: {e:8.0f} µs (shipping alone {s:6.0f} µs); "
          f"per event {e / N_EVENTS:5.1f} µs, evaluation alone {(e - s) / N_EVENTS:5.1f} µs")
