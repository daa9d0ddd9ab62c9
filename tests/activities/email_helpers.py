"""The worker's EmailSender for activity tests: each email it is handed is tried at once, in
the caller's thread, so a test reads the outcome on the next line."""

from dataclasses import dataclass, field

from activities.email_sender import Delivery, EmailSender, deliver


@dataclass
class SendAtOnce(EmailSender):
    deliveries: list[Delivery] = field(default_factory=list)

    def notify(self, key: str) -> None:
        self.deliveries.append(deliver(self.engine, self.send, key))
