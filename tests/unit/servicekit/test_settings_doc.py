from pydantic_settings import BaseSettings, SettingsConfigDict

from runner.settings_doc import BEGIN, END, markdown, replace_section, rows
from servicekit.settings import REPO_ROOT


class Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EXAMPLE_")

    # ---- a section header, not a meaning ----
    # How often the loop runs,
    # in seconds.
    interval_s: float = 1.0  # 0 = never
    token: str = "dev"  # signs things

    plain: list[str] = []


def test_a_meaning_is_the_comment_block_above_a_field_and_the_one_beside_it():
    assert list(rows(Example, "EXAMPLE_")) == [
        ("EXAMPLE_INTERVAL_S", "`1.0`", "How often the loop runs, in seconds. 0 = never."),
        ("EXAMPLE_TOKEN", "a development value (set your own)", "Signs things."),
        ("EXAMPLE_PLAIN", "`[]`", ""),
    ]


def test_every_environment_variable_the_settings_read_has_a_meaning():
    undocumented = [line for line in markdown().splitlines() if line.endswith("|  |")]
    assert undocumented == []


def test_the_readme_configuration_tables_are_what_the_settings_classes_read():
    readme = (REPO_ROOT / "docs" / "configuration.md").read_text()
    assert readme.index(BEGIN) < readme.index(END)
    # On failure: python -m runner.settings_doc --write docs/configuration.md
    assert replace_section(readme, markdown()) == readme
