"""The two logs: the catalog (every catalog aggregate, so a command touching several saves
them in one transaction) and jobs (job records, so job progress never waits on catalog
writes). Each is an eventsourcing application; the recorder topic in its environment says
how it orders appends (see recorders)."""

from __future__ import annotations

from pim.eventstore.transcoding import FastDecodingApplication

EVENTS_TABLE = "catalog_events"
HEADS_TABLE = "catalog_heads"
JOBS_EVENTS_TABLE = "jobs_events"


class CatalogApplication(FastDecodingApplication):
    name = "catalog"  # tables are named catalog_events, catalog_heads
    env = {"APPLICATION_RECORDER_TOPIC": "pim.eventstore.recorders:TenantOrderedRecorder"}


class JobsApplication(FastDecodingApplication):
    name = "jobs"  # tables are named jobs_events
    env = {"APPLICATION_RECORDER_TOPIC": "pim.eventstore.recorders:GlobalOrderedRecorder"}
