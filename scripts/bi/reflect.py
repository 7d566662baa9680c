"""The warehouse as a BI tool built on SQLAlchemy 1.4 sees it (Superset's schema picker, its
table and view lists, columns and primary keys: the dialect's own inspector, not a copy of its
queries), and whether each listed table and view can be read. Prints JSON.

    target/bi-venv/bin/python scripts/bi/reflect.py postgresql://ROLE:PASSWORD@HOST:PORT/DB
"""
import json
import sys

import sqlalchemy as sa


def main(url):
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    schemas = {}
    for schema in inspector.get_schema_names():
        listed = {}
        for kind, names in (("table", inspector.get_table_names(schema=schema)),
                            ("view", inspector.get_view_names(schema=schema))):
            for name in names:
                columns = [c["name"] for c in inspector.get_columns(name, schema=schema)]
                key = inspector.get_pk_constraint(name, schema=schema)["constrained_columns"]
                # A connection each: a failed read leaves no aborted transaction behind.
                with engine.connect() as conn:
                    try:
                        conn.execute(sa.text(f'SELECT * FROM "{schema}"."{name}" LIMIT 1'))
                        error = None
                    except sa.exc.DBAPIError as e:
                        error = str(e.orig).splitlines()[0]
                listed[name] = {"kind": kind, "columns": columns, "primary_key": key,
                                "error": error}
        schemas[schema] = listed
    print(json.dumps({"sqlalchemy": sa.__version__, "schemas": schemas}))


if __name__ == "__main__":
    main(sys.argv[1])
