"""What a check says: ``Check`` (one verdict) and ``Report`` (all of them, as ``--json`` prints).

The JSON shape is a contract: ``trading-service check-host --json``, the telemetry API's
``/host``, the root timer's file (ami/units.py) and ``fab bench`` documents all carry it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

PASS, FAIL, NA = "pass", "fail", "not_applicable"
STATUSES = (PASS, FAIL, NA)


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # one of STATUSES
    expected: str
    observed: str
    detail: str = ""  # on a failure: what to do about it


@dataclass
class Report:
    checks: list[Check]
    host: dict[str, str | int] = field(default_factory=dict)

    def count(self, status: str) -> int:
        return sum(c.status == status for c in self.checks)

    @property
    def passed(self) -> int:
        return self.count(PASS)

    @property
    def failed(self) -> int:
        return self.count(FAIL)

    @property
    def not_applicable(self) -> int:
        return self.count(NA)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def check(self, name: str) -> Check:
        return next(c for c in self.checks if c.name == name)

    def to_json(self) -> dict:
        return {
            "checks": [asdict(c) for c in self.checks],
            "ok": self.ok,
            "summary": {
                "passed": self.passed,
                "failed": self.failed,
                "not_applicable": self.not_applicable,
                "total": len(self.checks),
            },
            "host": dict(self.host),
        }
