"""adtarget.catalog."""
