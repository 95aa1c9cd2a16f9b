"""gunicorn settings for the gateway from a checkout or the image: `gunicorn -c gunicorn.conf.py`.

The settings live in the package (`federation/gunicorn_conf.py`) so that an installed
wheel serves with them too (`biofed serve` passes `-c python:federation.gunicorn_conf`);
this file only names them for the paths that start gunicorn from the project folder.
"""

from federation.gunicorn_conf import *  # noqa: F403
