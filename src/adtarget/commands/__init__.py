"""adtarget.commands."""
