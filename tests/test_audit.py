from __future__ import annotations

import pytest
from django.db import connection

from wizard import audit
from wizard.models import AuditEvent


@pytest.fixture
def chain(db, requester):
    return [audit.record(f"action {i}", actor=requester if i % 2 else None, details={"i": i}) for i in range(4)]


def test_events_link_to_the_previous_hash(chain):
    assert chain[0].prev_hash == audit.GENESIS
    assert [e.prev_hash for e in chain[1:]] == [e.hash for e in chain[:-1]]
    assert audit.verify_chain() is None


def test_system_events_name_the_system(chain):
    assert chain[0].actor is None and chain[0].actor_name == "system"
    assert chain[1].actor_name == "alice"


def test_it_refuses_updates_and_deletes_through_the_orm(chain):
    event = chain[1]
    event.action = "edited"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    with pytest.raises(PermissionError):
        AuditEvent.objects.filter(pk=event.pk).update(action="edited")
    with pytest.raises(PermissionError):
        AuditEvent.objects.all().delete()


def _raw(sql: str, params: list) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def test_it_detects_an_edit_in_the_database(chain):
    _raw("UPDATE wizard_auditevent SET action = %s WHERE id = %s", ["quietly changed", chain[2].pk])
    assert audit.verify_chain().pk == chain[2].pk


def test_it_detects_a_deletion_in_the_database(chain):
    _raw("DELETE FROM wizard_auditevent WHERE id = %s", [chain[1].pk])
    assert audit.verify_chain().pk == chain[2].pk


def test_it_detects_a_reordering_in_the_database(chain):
    a, b = chain[1], chain[2]
    _raw("UPDATE wizard_auditevent SET id = %s WHERE id = %s", [999, a.pk])
    _raw("UPDATE wizard_auditevent SET id = %s WHERE id = %s", [a.pk, b.pk])
    _raw("UPDATE wizard_auditevent SET id = %s WHERE id = %s", [b.pk, 999])
    assert audit.verify_chain().pk == a.pk
