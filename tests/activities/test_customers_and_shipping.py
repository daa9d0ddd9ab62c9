"""CustomerActivities and ShippingActivities on the demo data (SQLite, and PostgreSQL)."""

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.customers import CustomerActivities
from activities.errors import CUSTOMER_REJECTED
from activities.shipping import ShippingActivities, SimulatedCarrier
from models.activities import BookShipmentInput, VerifiedCustomer, VerifyCustomerInput
from models.orders import Address, DeliveryOption
from models.tables import Customer, Shipment

ELSEWHERE = Address(name="Ada", line1="1 Rue X", city="Paris", postal_code="75001", country="fr")


def verify(engine: Engine, customer_id: str, address: Address | None = None) -> VerifiedCustomer:
    return ActivityEnvironment().run(
        CustomerActivities(engine).verify_customer,
        VerifyCustomerInput(customer_id=customer_id, shipping_address=address),
    )


def test_an_active_customer_ships_to_the_address_on_file_unless_the_order_names_one(
    engine: Engine,
) -> None:
    on_file = verify(engine, "cus_ada")
    assert on_file.email == "ada@example.com"
    assert on_file.shipping_address.city == "Springfield"
    assert verify(engine, "cus_ada", ELSEWHERE).shipping_address == ELSEWHERE


@pytest.mark.parametrize(
    ("email", "address", "code"),
    [
        ("x@example.com", None, "incomplete_address"),
        ("not an email", ELSEWHERE, "invalid_email"),
        ("x@example.com", ELSEWHERE.model_copy(update={"country": "KP"}), "unsupported_country"),
        (None, None, "unknown_customer"),
    ],
)
def test_customers_we_cannot_serve_are_rejected_with_a_reason(
    engine: Engine, email: str | None, address: Address | None, code: str
) -> None:
    if email is not None:  # a customer with no address on file
        with Session(engine) as session:
            session.add(Customer(id="cus_x", name="X", email=email))
            session.commit()
    with pytest.raises(ApplicationError) as rejected:
        verify(engine, "cus_x", address)
    assert (rejected.value.type, rejected.value.details) == (CUSTOMER_REJECTED, (code,))
    assert rejected.value.non_retryable


def test_a_blocked_customer_is_rejected(engine: Engine) -> None:
    with pytest.raises(ApplicationError) as rejected:
        verify(engine, "cus_blocked")
    assert rejected.value.details == ("customer_blocked",)


def test_a_customer_flagged_for_review_is_verified_with_review_required(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(
            Customer(
                id="cus_flagged",
                name="Flagged",
                email="flagged@example.com",
                address_line1="1 Main St",
                city="Springfield",
                postal_code="62701",
                country="US",
                review_required=True,
            )
        )
        session.commit()
    assert verify(engine, "cus_flagged").review_required
    assert not verify(engine, "cus_ada").review_required


def test_a_retried_booking_returns_the_same_tracking_number(engine: Engine) -> None:
    shipping = ShippingActivities(SimulatedCarrier(engine))
    env = ActivityEnvironment()

    def book(key: str) -> str:
        return env.run(
            shipping.book_shipment,
            BookShipmentInput(
                order_id="o-1",
                parcel_id="PCL-o-1",
                delivery=DeliveryOption.EXPRESS,
                address=ELSEWHERE,
                idempotency_key=key,
            ),
        ).tracking_number

    first = book("ship-1")
    assert book("ship-1") == first
    assert book("ship-2") != first
    with Session(engine) as session:
        rows = session.exec(select(Shipment).where(Shipment.order_id == "o-1")).all()
    assert sorted(row.idempotency_key for row in rows) == ["ship-1", "ship-2"]
    assert {row.service for row in rows} == {"express"}
