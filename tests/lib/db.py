"""Direct database access for assertions (and for arranging test data)."""
import contextlib
import uuid

import psycopg2
import psycopg2.extras

from petstore_env import need


def connect(service):
    """A connection to a service's database as its own role, autocommit."""
    conn = psycopg2.connect(need(f"{service.upper()}_DATABASE_URL"))
    conn.autocommit = True
    return conn


def admin(dbname="postgres"):
    conn = psycopg2.connect(need("PETSTORE_PG_ADMIN_URL") + f" dbname={dbname}")
    conn.autocommit = True
    return conn


def rows(conn, sql, *args):
    with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
        cur.execute(sql, args)
        return cur.fetchall() if cur.description else []


def value(conn, sql, *args):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
        return row[0] if row else None


@contextlib.contextmanager
def scratch(prefix):
    """A new empty database on the system's server for the duration of the block; yields its
    libpq connection string (as the administrator). Dropped afterwards, sessions and all."""
    name = prefix + "_" + uuid.uuid4().hex[:12]
    conn = admin()
    rows(conn, f"CREATE DATABASE {name}")
    try:
        yield need("PETSTORE_PG_ADMIN_URL") + f" dbname={name}"
    finally:
        rows(conn, f"DROP DATABASE {name} WITH (FORCE)")
        conn.close()
