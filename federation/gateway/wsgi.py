"""The WSGI entry point gunicorn loads (`federation.gateway.wsgi:app`)."""

from federation.gateway import create_app

app = create_app()
