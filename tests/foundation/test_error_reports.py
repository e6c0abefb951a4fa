"""Debug pages and error reports never show a credential, even inside a URL or a DSN."""
from __future__ import annotations

import sys
import uuid

import pytest
from django.test import RequestFactory
from django.views.debug import ExceptionReporter

from billing_project.error_reports import MASK, redact_credentials

# Made up at run time: a password written in this file would show in the page's source
# excerpts of the traceback (which are code, not data).
PW = {n: f"pw{n}x{uuid.uuid4().hex[:12]}" for n in range(1, 10)}
SECRETS = {
    "REDIS_URL": f"redis://:{PW[1]}@redis.internal:6379/0",
    "CELERY_BROKER_URL": f"redis://celery:{PW[2]}@redis.internal:6379/0",
    "NEXACLOUD_DSN": f"host=nc.internal user=reader password='{PW[3]} x' dbname=nexacloud",
    "ODOO_URL": f"https://bot:{PW[4]}@odoo.internal/?api_key={PW[5]}",
}


@pytest.mark.parametrize("text, expected", [
    ("postgres://billing:s3cr%40t@db:5432/billing", f"postgres://billing:{MASK}@db:5432/billing"),
    ("redis://:pw@redis:6379/0", f"redis://:{MASK}@redis:6379/0"),
    ("https://bot:pw@odoo.example/x?api_key=k&page=2", f"https://bot:{MASK}@odoo.example/x?api_key={MASK}&page=2"),
    ("postgres://reader@db/nc?password=pw&sslmode=require", f"postgres://reader@db/nc?password={MASK}&sslmode=require"),
    ("host=db user=nexa password=pw dbname=nc", f"user=nexa password={MASK} dbname=nc host=db"),
    ("could not connect: host=db password='a b' and postgres://u:p@h/d",
     f"could not connect: host=db password={MASK} and postgres://u:{MASK}@h/d"),
    ("redis://redis:6379/0", "redis://redis:6379/0"),
    ("dbname=nc host=db", "dbname=nc host=db"),
    ("no credentials here", "no credentials here"),
])
def test_redact_credentials(text, expected):
    assert redact_credentials(text) == expected


@pytest.mark.django_db
def test_the_debug_page_of_a_request_from_the_network_masks_urls_and_dsns(client, settings):
    """DEBUG on and a request with a foreign Host: Django answers with its technical page,
    listing the settings and the request's environment (runserver copies os.environ there)."""
    settings.DEBUG = True
    for name, value in SECRETS.items():
        setattr(settings, name, value)
    response = client.get("/admin/login/", HTTP_HOST="attacker.example",
                          DATABASE_URL=f"postgres://billing:{PW[6]}@db.internal:5432/billing")
    assert response.status_code == 400
    page = response.content.decode()
    assert "DisallowedHost" in page and "REDIS_URL" in page and "DATABASE_URL" in page  # the technical page
    for n in range(1, 7):
        assert PW[n] not in page
    assert "redis.internal" in page and "db.internal" in page and "nc.internal" in page  # masked, not dropped


def _fail_with_credentials_in_local_variables():
    dsn = f"postgresql://nexa:{PW[7]}@db.internal/nexacloud"  # noqa: F841
    conninfo = f"host=db.internal user=nexa password={PW[8]} dbname=nexacloud"  # noqa: F841
    environment = {"REDIS_URL": f"redis://:{PW[9]}@redis.internal:6379/1"}  # noqa: F841
    raise RuntimeError("could not reach the source")


def test_the_technical_500_page_masks_credentials_in_traceback_variables(settings):
    settings.DEBUG = True
    request = RequestFactory().get("/api/v1/customers")
    try:
        _fail_with_credentials_in_local_variables()
    except RuntimeError:
        reporter = ExceptionReporter(request, *sys.exc_info())
    html, text = reporter.get_traceback_html(), reporter.get_traceback_text()
    assert "conninfo" in html and "db.internal" in html and "redis.internal" in html  # the variables are shown
    for page in (html, text):
        assert "could not reach the source" in page
        assert PW[7] not in page and PW[8] not in page and PW[9] not in page


# Every form a PostgreSQL DSN takes (libpq: URI or key=value), each with the made-up secret
# "{pw}" somewhere a careless regex misses it.
DSN_FORMS = [
    "postgresql://billing:{pw}@db:5432/billing",
    "postgres://billing:{pw}@db1:5432,db2:5433/billing?target_session_attrs=read-write",
    "postgresql://billing@db/billing?password={pw}&sslmode=require",
    "postgresql:///billing?host=/var/run/postgresql&password={pw}",
    "postgresql://billing:{pw}/with/slashes@db/billing",
    "postgresql://billing:{pw}'quote@db/billing",
    "postgresql://billing:{pw}#hash?and=query@db/billing",
    "postgresql://billing:{pw}@at@db/billing",
    "postgresql://billing@db/billing?sslpassword={pw}",
    "host=db user=billing password={pw} dbname=billing",
    "host=db user=billing password = '{pw} with \\' quote' dbname=billing",
    "host=db sslkey=/k.pem sslpassword={pw} dbname=billing",
    "dbname=billing PASSWORD={pw}",
]


@pytest.mark.parametrize("form", DSN_FORMS)
def test_every_dsn_form_is_redacted_alone_and_inside_text(form):
    from billing_kit.dsn import redact_dsn
    from migration.reader import redact_dsn as redact_source_dsn

    pw = PW[9]
    dsn = form.format(pw=pw)
    for redacted in (redact_dsn(dsn), redact_credentials(dsn), redact_source_dsn(dsn),
                     redact_credentials(f"connection to {dsn} failed: timeout")):
        assert pw not in redacted, redacted
        assert "db" in redacted or "/var/run/postgresql" in redacted  # still says where
    assert MASK in redact_dsn(dsn)
    assert "***" in redact_source_dsn(dsn)
