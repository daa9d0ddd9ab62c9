"""Customers: who may place orders, and where their parcels go by default.

A customer belongs to the API client that created it: only that client (and operators) may
read it or order for it; to any other client it does not exist (the same 404, and the same
422 when ordering, as an unknown id). An operator may create a customer for a client by
naming it `owner`; without one, the customer is shared, like the seeded demo customers, and
shared customers are honoured in development only.
"""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from api.auth import PrincipalDep, forbidden
from api.deps import SessionDep, SettingsDep
from api.problems import not_found, problem_responses
from api.routes.orders import may_use_customer
from models.http import (
    CREATE_CUSTOMER_EXAMPLES,
    CUSTOMER_ID_PATTERN,
    CreateCustomerRequest,
    CustomerView,
)
from models.orders import Address
from models.tables import Customer

router = APIRouter(prefix="/customers", tags=["customers"])

CustomerIdPath = Annotated[str, Path(pattern=CUSTOMER_ID_PATTERN, examples=["cus_ada"])]


def _view(customer: Customer) -> CustomerView:
    address = None
    if customer.address_line1 and customer.city and customer.postal_code and customer.country:
        address = Address(
            name=customer.name,
            line1=customer.address_line1,
            line2=customer.address_line2,
            city=customer.city,
            postal_code=customer.postal_code,
            country=customer.country,
        )
    created = customer.created_at
    return CustomerView(
        id=customer.id,
        owner=customer.owner,
        name=customer.name,
        email=customer.email,
        address=address,
        blocked=customer.blocked,
        created_at=created.replace(tzinfo=UTC) if created.tzinfo is None else created,
    )


@router.post(
    "",
    status_code=201,
    response_model=CustomerView,
    summary="Create a customer",
    responses={
        201: {
            "description": "Created; `Location` names the customer",
            "headers": {
                "Location": {
                    "description": "The customer, `/customers/{id}`",
                    "schema": {"type": "string"},
                }
            },
        },
        **problem_responses(403, 413, 422),
    },
)
def create_customer(
    request: Annotated[CreateCustomerRequest, Body(openapi_examples=CREATE_CUSTOMER_EXAMPLES)],
    response: Response,
    session: SessionDep,
    principal: PrincipalDep,
) -> CustomerView:
    """The customer is the caller's own; an operator may give it to a client (`owner`)."""
    if principal.is_operator:
        owner = request.owner
    elif request.owner in (None, principal.name):
        owner = principal.name
    else:
        raise forbidden("only an operator may create a customer for another client")
    address = request.address
    customer = Customer(
        id=f"cus_{uuid.uuid4().hex[:16]}",
        owner=owner,
        name=request.name,
        email=str(request.email),
        address_line1=address.line1 if address else None,
        address_line2=address.line2 if address else None,
        city=address.city if address else None,
        postal_code=address.postal_code if address else None,
        country=address.country if address else None,
        created_at=datetime.now(UTC),
    )
    session.add(customer)
    session.commit()
    session.refresh(customer)
    response.headers["Location"] = f"/customers/{customer.id}"
    return _view(customer)


@router.get(
    "/{customer_id}",
    response_model=CustomerView,
    summary="Get a customer",
    responses=problem_responses(404, 422),
)
def get_customer(
    customer_id: CustomerIdPath,
    session: SessionDep,
    principal: PrincipalDep,
    settings: SettingsDep,
) -> CustomerView:
    """A client reads its own customers (and, in development, the shared demo ones); an
    operator every customer. Any other is a 404, as if it did not exist."""
    customer = session.get(Customer, customer_id)
    if not may_use_customer(customer, principal, production=settings.is_production):
        raise not_found("customer", f"there is no customer {customer_id}")
    assert customer is not None
    return _view(customer)
