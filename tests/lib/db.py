"""Direct database access for assertions (and for arranging test data)."""
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
