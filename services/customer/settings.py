from pydantic_settings import SettingsConfigDict

from servicekit.settings import ServiceSettings


class CustomerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CUSTOMER_", extra="ignore")

    name: str = "customer"
    port: int = 8001
