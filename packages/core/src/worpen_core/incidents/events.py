"""What happens to incidents: each is a domain event, so it reaches the journal, the central log (as the
line it says it makes) and the live stream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from worpen_core.incidents.model import Incident, ResolutionMethod, Severity
from worpen_core.logs.model import Level
from worpen_core.logs.render import Narrated, Rendered


@dataclass(frozen=True, slots=True)
class IncidentEvent(Narrated):
    incident_id: str
    service: str
    node: str
    issue: str
    severity: Severity
    at: datetime

    @property
    def subject(self) -> str:
        return f"{self.node}/{self.service}"

    @property
    def _what(self) -> str:
        where = f"{self.service}/{self.node}"
        return f"incident {self.incident_id} ({self.severity.value}) {self.issue!r} on {where}"

    @staticmethod
    def about(incident: Incident, at: datetime) -> tuple[str, str, str, str, Severity, datetime]:
        """The fields every incident event starts with."""
        return incident.id, incident.service, incident.node, incident.issue, incident.severity, at


@dataclass(frozen=True, slots=True)
class IncidentOpened(IncidentEvent):
    trigger: str | None
    rule_id: str | None

    def line(self) -> Rendered:
        return Rendered(Level.WARN, self.node, f"{self._what} opened")


@dataclass(frozen=True, slots=True)
class IncidentRecurred(IncidentEvent):
    """Seen again while open: counted on the open incident instead of opening another."""

    occurrences: int

    def line(self) -> Rendered:
        return Rendered(Level.WARN, self.node, f"{self._what} seen again ({self.occurrences} occurrences)")


@dataclass(frozen=True, slots=True)
class IncidentReopened(IncidentEvent):
    occurrences: int

    def line(self) -> Rendered:
        return Rendered(
            Level.WARN, self.node, f"{self._what} reopened: it recurred soon after it was resolved"
        )


@dataclass(frozen=True, slots=True)
class IncidentUpdated(IncidentEvent):
    """A remediation step was taken (or tried)."""

    message: str
    action: str

    def line(self) -> Rendered:
        return Rendered(Level.INFO, self.node, f"{self._what}: {self.message}")


@dataclass(frozen=True, slots=True)
class IncidentEscalated(IncidentEvent):
    """Remediation gave up: the incident is FAILED and needs a person."""

    reason: str

    def line(self) -> Rendered:
        return Rendered(Level.ERROR, self.node, f"{self._what} FAILED, needs attention: {self.reason}")


@dataclass(frozen=True, slots=True)
class IncidentResolved(IncidentEvent):
    by: str
    method: ResolutionMethod
    notes: str | None

    def line(self) -> Rendered:
        how = "automatically" if self.method is ResolutionMethod.AUTO else "by hand"
        said = f": {self.notes}" if self.notes else ""
        return Rendered(Level.SUCCESS, self.node, f"{self._what} resolved {how} by {self.by}{said}")
