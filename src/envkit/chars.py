"""Character classes shared by the loader, the checks, the quoting and the diagnostics."""

import re

# C0 and C1 controls and the Unicode line separators: anything a reader may take as a break.
BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# ASCII controls: what a shell or Dockerfile quoting must escape or refuse.
ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
