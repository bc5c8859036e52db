"""Files in and out: which inputs, hostile images decoded safely, output names, whole writes, fast PNG."""
