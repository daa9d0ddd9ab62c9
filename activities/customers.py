"""Customer checks before an order is accepted."""

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio import activity

from activities.errors import CUSTOMER_REJECTED, business_failure
from database import read_only
from models.activities import VerifiedCustomer, VerifyCustomerInput
from models.orders import Address
from models.tables import Customer

# Countries the built-in carrier delivers to.
SUPPORTED_COUNTRIES = frozenset({"US", "CA", "GB", "IE", "DE", "FR", "NL", "AU"})


class CustomerActivities:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    @activity.defn(name="verify_customer")
    def verify_customer(self, request: VerifyCustomerInput) -> VerifiedCustomer:
        """The customer exists, is not blocked, has a deliverable email and shipping address.

        Without a shipping address on the order, the customer's address on file is used.
        """
        with Session(read_only(self._engine)) as session:
            customer = session.get(Customer, request.customer_id)
        if customer is None:
            raise business_failure(
                CUSTOMER_REJECTED, "unknown_customer", f"no customer {request.customer_id!r}"
            )
        if customer.blocked:
            raise business_failure(
                CUSTOMER_REJECTED, "customer_blocked", f"customer {customer.id} is blocked"
            )
        try:
            validate_email(customer.email, check_deliverability=False)
        except EmailNotValidError as err:
            raise business_failure(CUSTOMER_REJECTED, "invalid_email", str(err)) from err

        address = request.shipping_address or _address_on_file(customer)
        if address is None:
            raise business_failure(
                CUSTOMER_REJECTED,
                "incomplete_address",
                "no shipping address on the order or on file",
            )
        if address.country not in SUPPORTED_COUNTRIES:
            raise business_failure(
                CUSTOMER_REJECTED,
                "unsupported_country",
                f"we do not deliver to {address.country}",
            )
        return VerifiedCustomer(
            customer_id=customer.id,
            name=customer.name,
            email=customer.email,
            shipping_address=address,
            review_required=customer.review_required,
        )


def _address_on_file(customer: Customer) -> Address | None:
    fields = (customer.address_line1, customer.city, customer.postal_code, customer.country)
    if not all(fields):
        return None
    return Address(
        name=customer.name,
        line1=customer.address_line1 or "",
        line2=customer.address_line2,
        city=customer.city or "",
        postal_code=customer.postal_code or "",
        country=customer.country or "",
    )
