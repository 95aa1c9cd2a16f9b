-- Run once by the postgres image when its data volume is empty (docker-entrypoint-initdb.d).
-- The OpenSearch stack (compose profile `opensearch`) keeps its state in a database of its
-- own, so its sync history never mixes with the Elasticsearch stack's when both run.
CREATE DATABASE biofed_opensearch OWNER biofed;
