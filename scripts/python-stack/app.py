"""The stack NOVA replaces, reduced to NOVA's job endpoints, for scripts/bench-python-stack.

FastAPI served by Gunicorn with uvicorn workers; jobs are rows in PostgreSQL (psycopg 3 and its async
connection pool) and run by Celery, with Redis as the broker. As such an app is usually written:

- POST /v1/jobs checks the body (pydantic), inserts the job's row (one transaction, committed when the
  pooled connection is handed back), then sends the Celery task, and answers 202 with the job;
- GET /v1/jobs/{id} reads the row and answers it, or 404.

Settings come from the environment: DATABASE_URL (psycopg's conninfo), REDIS_URL (the broker), POOL_SIZE
(connections per Gunicorn worker).
"""

import os
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone

from celery import Celery
from fastapi import FastAPI, HTTPException
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

WORKFLOWS = {"noop", "invoice.extract", "code.run", "task.run"}

celery = Celery("jobs", broker=os.environ["REDIS_URL"])
pool = AsyncConnectionPool(
    os.environ["DATABASE_URL"], min_size=2, max_size=int(os.environ.get("POOL_SIZE", "8")), open=False
)


@celery.task(name="jobs.run")
def run_job(job_id: str) -> None:
    """What a worker would run; the benchmark starts no Celery worker (API only, as `nova serve --workers 0`)."""


@asynccontextmanager
async def lifespan(_app: FastAPI):
    await pool.open()
    yield
    await pool.close()


app = FastAPI(lifespan=lifespan)


class CreateJob(BaseModel):
    workflow: str
    input: dict = Field(default_factory=dict)
    priority: int = Field(default=0, ge=-1000, le=1000)
    max_attempts: int = Field(default=3, ge=1, le=20)


def job_json(row) -> dict:
    job_id, workflow, job_input, status, priority, max_attempts, created_at = row
    return {
        "id": job_id,
        "workflow": workflow,
        "input": job_input,
        "status": status,
        "priority": priority,
        "max_attempts": max_attempts,
        "created_at": created_at.isoformat(),
    }


@app.post("/v1/jobs", status_code=202)
async def create(body: CreateJob) -> dict:
    if body.workflow not in WORKFLOWS:
        raise HTTPException(status_code=422, detail=f"unknown workflow {body.workflow!r}")
    row = (f"job_{uuid.uuid4().hex}", body.workflow, body.input, "queued", body.priority, body.max_attempts,
           datetime.now(timezone.utc))
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO jobs (id, workflow, input, status, priority, max_attempts, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (row[0], row[1], Jsonb(row[2]), *row[3:]),
        )
    # Sent after the commit, so a worker never looks for a row that is not there.
    run_job.apply_async(args=[row[0]], task_id=row[0])
    return job_json(row)


@app.get("/v1/jobs/{job_id}")
async def show(job_id: str) -> dict:
    async with pool.connection() as conn:
        cursor = await conn.execute(
            "SELECT id, workflow, input, status, priority, max_attempts, created_at FROM jobs WHERE id = %s",
            (job_id,),
        )
        row = await cursor.fetchone()
    if row is None:
        raise HTTPException(status_code=404, detail="no such job")
    return job_json(row)


@app.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}
