"""HTTP routes of the customer service."""

from fastapi import APIRouter, Response, status

from servicekit.deps import SessionDep
from services.customer import service
from services.customer.models import CustomerCreate, CustomerPublic

router = APIRouter(prefix="/customers", tags=["customers"])


@router.post("", response_model=CustomerPublic, status_code=status.HTTP_201_CREATED)
async def create_customer(data: CustomerCreate, session: SessionDep, response: Response) -> CustomerPublic:
    customer, created = await service.create_customer(session=session, data=data)
    await session.commit()
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/customers/{customer.id}"
    return CustomerPublic.model_validate(customer, from_attributes=True)


@router.get("/{customer_id}", response_model=CustomerPublic)
async def get_customer(customer_id: str, session: SessionDep) -> CustomerPublic:
    customer = await service.get_customer(session=session, customer_id=customer_id)
    return CustomerPublic.model_validate(customer, from_attributes=True)
