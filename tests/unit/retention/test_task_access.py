"""What the gateway's object checks read from retention: one task by id, and owners that follow the customer."""

from tests.unit.retention.events import complaint, created, updated
from tests.unit.retention.test_api_loop import feed


async def test_a_task_is_read_by_its_id_and_an_unknown_one_is_a_404_problem(app_db):
    client, database = app_db
    await feed(database, created("c-1", owner="anna"), complaint("c-1"))
    task = (await client.get("/tasks", params={"owner": "anna"})).json()["items"][0]

    one = await client.get(f"/tasks/{task['id']}")

    assert one.status_code == 200
    assert one.json() == task
    missing = await client.get("/tasks/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


async def test_a_reassigned_customers_closed_work_leaves_the_previous_owners_lists(app_db):
    client, database = app_db
    await feed(database, created("c-1", owner="anna"), complaint("c-1"))
    tasks = (await client.get("/tasks", params={"owner": "anna"})).json()["items"]
    assert (await client.post(f"/tasks/{tasks[0]['id']}/complete", json={"note": "done"})).status_code == 200
    [alert] = (await client.get("/alerts", params={"owner": "anna"})).json()["items"]
    assert (await client.post(f"/alerts/{alert['id']}/resolve", json={"outcome": "saved"})).status_code == 200

    await feed(database, updated("c-1", owner="ben"))

    assert (await client.get("/tasks", params={"owner": "anna"})).json()["total"] == 0
    assert (await client.get("/alerts", params={"owner": "anna"})).json()["total"] == 0
    assert (await client.get("/tasks", params={"owner": "ben"})).json()["total"] == len(tasks)
    assert (await client.get("/alerts", params={"owner": "ben"})).json()["total"] == 1
