"""The constrained strings every payload uses: free text, SKUs, country codes, card tokens."""

from typing import Annotated

from pydantic import StringConstraints

Sku = Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{0,63}$")]
# Free text never holds control characters (NUL, escapes, C1 codes): PostgreSQL refuses NUL,
# and none belongs in an email header or a log line. Text of several lines (messages,
# comments) may hold tabs and line breaks; everything else is one line.
ONE_LINE = r"^[^\x00-\x1f\x7f-\x9f]*$"
MULTI_LINE = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$"
Text = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200, pattern=ONE_LINE)
]
# One line, possibly empty (an address's second line, a cancel's reason).
ShortText = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200, pattern=ONE_LINE)
]
LongText = Annotated[str, StringConstraints(max_length=2000, pattern=MULTI_LINE)]
CountryCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, pattern=r"^[A-Za-z]{2}$")
]
# Card tokens only: a raw card number can never match this, so it can never reach a payload.
CardToken = Annotated[str, StringConstraints(pattern=r"^tok_[A-Za-z0-9_]{1,64}$")]
