"""Customers: who may place orders, and where their parcels go by default."""

import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Body, Path, Response

from api.auth import OperatorOnly
from api.deps import SessionDep
from api.problems import not_found, problem_responses
from models.http import CREATE_CUSTOMER_EXAMPLES, CreateCustomerRequest, CustomerView
from models.orders import Address
from models.tables import Customer

router = APIRouter(prefix="/customers", tags=["customers"])

CustomerIdPath = Annotated[str, Path(min_length=1, max_length=64, examples=["cus_ada"])]


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
        201: {"description": "Created; `Location` names the customer"},
        **problem_responses(422),
    },
)
def create_customer(
    request: Annotated[CreateCustomerRequest, Body(openapi_examples=CREATE_CUSTOMER_EXAMPLES)],
    response: Response,
    session: SessionDep,
) -> CustomerView:
    address = request.address
    customer = Customer(
        id=f"cus_{uuid.uuid4().hex[:16]}",
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
    summary="Get a customer (operators: it holds contact details)",
    responses=problem_responses(403, 404, 422),
    dependencies=[OperatorOnly],
)
def get_customer(customer_id: CustomerIdPath, session: SessionDep) -> CustomerView:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise not_found("customer", f"there is no customer {customer_id}")
    return _view(customer)
