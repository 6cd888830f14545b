"""adtarget.ingest."""
