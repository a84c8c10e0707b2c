"""constraints.txt from a ``pip install --dry-run --report`` of the project: one exact pin a dependency."""

import json
import sys

HEADER = """\
# Exact versions of every dependency (core, the s3 extra; pip and setuptools to build): reproducible images.
# The Dockerfile installs with -c constraints.txt. Regenerate after changing dependencies: make lock"""

report = json.load(open(sys.argv[1]))
print(HEADER)
for name, version in sorted(
    (item["metadata"]["name"].lower(), item["metadata"]["version"])
    for item in report["install"]
    if item["metadata"]["name"] != "article-ingest"
):
    print(f"{name}=={version}")
