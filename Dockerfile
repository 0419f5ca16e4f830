# The image compose.yaml runs: one image, three services (`aduan serve intake|case|metrics`).
FROM python:3.11.14-slim-bookworm
WORKDIR /app
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY pyproject.toml README.md ./
COPY shared shared
COPY services services
COPY intake_api intake_api
COPY case_api case_api
COPY metrics_worker metrics_worker
COPY migrations migrations
RUN pip install . && useradd --system aduan && mkdir /app/.aduan && chown aduan /app/.aduan
USER aduan
CMD ["aduan", "serve", "all", "--host", "0.0.0.0"]
