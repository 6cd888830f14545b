"""adtarget.api.routes."""
