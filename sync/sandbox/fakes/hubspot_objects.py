"""Companies, deals and their associations with contacts, for the fake HubSpot (a mixin of FakeHubSpot).

As ../shared/api/hubspot.md describes the 2026-09 API: companies and deals have their own batch
read (100 inputs, archived ones not answered), search (by `hs_lastmodifieddate`, 200 a page,
10,000 results per query) and property schemas; deal stages have labels in the pipelines API;
associations are read in batches of up to 1,000 ids, each id's list paged with `paging.next.after`
only when more remain. The contact->company association carrying HubSpot's "Primary" label
(`HUBSPOT_DEFINED` typeId 1) is the contact's primary company, also kept in the contact property
`associatedcompanyid` (setting it modifies the contact, as HubSpot does). Adding or removing an
association bumps no timestamp on either record (HubSpot does not say it does; code must not rely
on it). Switches: `association_ids` ("string", as the spec types toObjectId, or "number"),
`no_associations` ("empty" answers an id without associations with an empty list; "207" leaves it
out and names it in a 207's NO_ASSOCIATIONS_FOUND error, as real answers were remembered to do),
`association_page_size` (one id's list per page), `association_failures` (ids answered with an error).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

from werkzeug.wrappers import Request, Response

COMPANIES_READ_SCOPE = "crm.objects.companies.read"
DEALS_READ_SCOPE = "crm.objects.deals.read"
COMPANIES_SCHEMA_SCOPE = "crm.schemas.companies.read"
DEALS_SCHEMA_SCOPE = "crm.schemas.deals.read"
OBJECT_SCOPES = {"companies": COMPANIES_READ_SCOPE, "deals": DEALS_READ_SCOPE}
SCHEMA_SCOPES = {"companies": COMPANIES_SCHEMA_SCOPE, "deals": DEALS_SCHEMA_SCOPE}
ASSOCIATION_BATCH_MAX = 1000
PRIMARY = {"category": "HUBSPOT_DEFINED", "typeId": 1, "label": "Primary"}
# The unlabeled association types (../shared/api/hubspot.md).
PLAIN_TYPES = {("contacts", "companies"): 279, ("contacts", "deals"): 4, ("deals", "contacts"): 3,
               ("companies", "contacts"): 280}
COMPANY_PRIMARY_OF_CONTACT = 2  # company->contact, for the contact's primary company

DEFAULT_STAGES = [("appointmentscheduled", "Appointment Scheduled", False, "0.2"),
                  ("qualifiedtobuy", "Qualified To Buy", False, "0.4"),
                  ("contractsent", "Contract Sent", False, "0.8"),
                  ("closedwon", "Closed Won", True, "1.0"),
                  ("closedlost", "Closed Lost", True, "0.0")]


def _prop(name: str, label: str, type_: str = "string", field_type: str = "text",
          options: Optional[List[Tuple[str, str]]] = None, group: str = "companyinformation") -> Dict[str, Any]:
    return {"name": name, "label": label, "type": type_, "fieldType": field_type, "groupName": group,
            "description": "", "hidden": False, "calculated": False, "hubspotDefined": True,
            "options": [{"label": lab, "value": val, "hidden": False, "displayOrder": i}
                        for i, (val, lab) in enumerate(options or [])]}


COMPANY_PROPERTIES: List[Dict[str, Any]] = [
    _prop("name", "Company name"),
    _prop("domain", "Company Domain Name"),
    _prop("industry", "Industry", "enumeration", "select",
          [("COMPUTER_SOFTWARE", "Computer Software"), ("RETAIL", "Retail"), ("BANKING", "Banking")]),
    _prop("numberofemployees", "Number of Employees", "number", "number"),
    _prop("lifecyclestage", "Lifecycle Stage", "enumeration", "radio",
          [("lead", "Lead"), ("opportunity", "Opportunity"), ("customer", "Customer")]),
    _prop("is_public", "Is Public", "bool", "booleancheckbox", [("true", "Yes"), ("false", "No")]),
    _prop("hubspot_owner_id", "Company owner", "enumeration", "select"),
    _prop("createdate", "Create Date", "datetime", "date"),
    _prop("hs_lastmodifieddate", "Last Modified Date", "datetime", "date"),
    _prop("hs_object_id", "Record ID", "number", "number"),
]
DEAL_PROPERTIES: List[Dict[str, Any]] = [
    _prop("dealname", "Deal Name", group="dealinformation"),
    _prop("amount", "Amount", "number", "number", group="dealinformation"),
    _prop("dealstage", "Deal Stage", "enumeration", "radio", [(s, lab) for s, lab, _, _ in DEFAULT_STAGES],
          group="dealinformation"),
    _prop("pipeline", "Pipeline", "enumeration", "select", [("default", "Sales Pipeline")], group="dealinformation"),
    _prop("closedate", "Close Date", "datetime", "date", group="dealinformation"),
    _prop("hs_is_closed", "Is Deal Closed?", "bool", "booleancheckbox", [("true", "Yes"), ("false", "No")],
          group="dealinformation"),
    _prop("hs_is_closed_won", "Is Closed Won", "bool", "booleancheckbox", [("true", "Yes"), ("false", "No")],
          group="dealinformation"),
    _prop("renewal_date", "Renewal date", "date", "date", group="dealinformation"),
    _prop("createdate", "Create Date", "datetime", "date", group="dealinformation"),
    _prop("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", group="dealinformation"),
    _prop("hs_object_id", "Record ID", "number", "number", group="dealinformation"),
]


class AssociatedObjects:
    """Companies, deals and associations; mixed into FakeHubSpot, which supplies lock, now_ms, ok, _error."""

    # Supplied by FakeHubSpot.
    lock: Any
    contacts: Dict[int, Dict[str, Any]]

    def _init_objects(self) -> None:
        self.objects: Dict[str, Dict[int, Dict[str, Any]]] = {"companies": {}, "deals": {}}
        self.object_properties: Dict[str, List[Dict[str, Any]]] = {
            "companies": [dict(p) for p in COMPANY_PROPERTIES], "deals": [dict(p) for p in DEAL_PROPERTIES]}
        stamp = "2024-01-01T00:00:00.000Z"
        self.pipelines: List[Dict[str, Any]] = [{"id": "default", "label": "Sales Pipeline", "displayOrder": 0,
                                                 "archived": False, "createdAt": stamp, "updatedAt": stamp, "stages": [
            {"id": s, "label": lab, "displayOrder": i, "archived": False, "createdAt": stamp, "updatedAt": stamp,
             "writePermissions": "CRM_PERMISSIONS_ENFORCEMENT",
             "metadata": {"isClosed": str(closed).lower(), "probability": p}}
            for i, (s, lab, closed, p) in enumerate(DEFAULT_STAGES)]}]
        # (contact id, company id) -> primary?; (contact id, deal id) links.
        self.company_links: Dict[Tuple[int, int], bool] = {}
        self.deal_links: Dict[Tuple[int, int], bool] = {}
        # The same links by record, both ways: (kind, id) -> {other id} (rebuilt by reindex_links).
        self._linked: Dict[Tuple[str, int], Set[int]] = {}
        self._next_object_id = 50_001
        self.no_associations = "empty"  # or "207"
        self.association_page_size = 500
        # The 2026-09 spec types toObjectId as a string; v4's documented examples show a number. Unconfirmed:
        # "string" (the spec) or "number".
        self.association_ids = "string"
        # Ids whose associations a batch read cannot read now (a per-id error that is not "none").
        self.association_failures: Set[str] = set()

    # -- seeding -------------------------------------------------------------------------
    def _add_object(self, kind: str, properties: Dict[str, Any], created_ms: Optional[int] = None) -> str:
        from .hubspot import iso_ms
        with self.lock:
            oid = self._next_object_id
            self._next_object_id += 1
            now = self.now_ms()  # type: ignore[attr-defined]
            created = created_ms if created_ms is not None else now
            props = {k: (None if v is None else str(v)) for k, v in properties.items()}
            props.update(hs_object_id=str(oid), createdate=iso_ms(created), hs_lastmodifieddate=iso_ms(now))
            self.objects[kind][oid] = {"properties": props, "created": created, "modified": now, "archived": False}
            return str(oid)

    def add_company(self, properties: Dict[str, Any]) -> str:
        return self._add_object("companies", properties)

    def add_deal(self, properties: Dict[str, Any], created_ms: Optional[int] = None) -> str:
        props = dict(properties)
        stage = props.get("dealstage")
        if stage is not None:  # HubSpot calculates these two from the stage
            closed = next((c for s, _, c, _ in DEFAULT_STAGES if s == stage), False)
            props.setdefault("hs_is_closed", str(closed).lower())
            props.setdefault("hs_is_closed_won", str(stage == "closedwon").lower())
        return self._add_object("deals", props, created_ms)

    def update_object(self, kind: str, oid: str, properties: Dict[str, Any]) -> None:
        from .hubspot import iso_ms
        with self.lock:
            record = self.objects[kind][int(oid)]
            record["properties"].update({k: (None if v is None else str(v)) for k, v in properties.items()})
            if kind == "deals" and "dealstage" in properties:
                stage = properties["dealstage"]
                closed = next((c for s, _, c, _ in DEFAULT_STAGES if s == stage), False)
                record["properties"]["hs_is_closed"] = str(closed).lower()
                record["properties"]["hs_is_closed_won"] = str(stage == "closedwon").lower()
            record["modified"] = self.now_ms()  # type: ignore[attr-defined]
            record["properties"]["hs_lastmodifieddate"] = iso_ms(record["modified"])

    def archive_object(self, kind: str, oid: str) -> None:
        """Deleted: no read or search answers it, its associations are no longer listed."""
        with self.lock:
            record = self.objects[kind][int(oid)]
            record["archived"] = True
            record["modified"] = self.now_ms()  # type: ignore[attr-defined]

    def associate_company(self, contact_id: str, company_id: str, primary: bool = False) -> None:
        """Associates a company; `primary` makes it the contact's primary company (HubSpot then sets the
        contact's associatedcompanyid, which modifies the contact). A plain association bumps nothing."""
        with self.lock:
            cid, oid = int(contact_id), int(company_id)
            if primary:  # the contact's other companies lose the label
                for other in self._linked.get(("contacts>companies", cid), set()):
                    self.company_links[(cid, other)] = False
            self.company_links[(cid, oid)] = primary or self.company_links.get((cid, oid), False)
            self._link("companies", cid, oid)
        if primary:
            self.update_contact(contact_id, {"associatedcompanyid": company_id})  # type: ignore[attr-defined]

    def associate_deal(self, contact_id: str, deal_id: str) -> None:
        with self.lock:
            self.deal_links[(int(contact_id), int(deal_id))] = True
            self._link("deals", int(contact_id), int(deal_id))

    def _link(self, kind: str, contact_id: int, object_id: int) -> None:
        self._linked.setdefault((f"contacts>{kind}", contact_id), set()).add(object_id)
        self._linked.setdefault((f"{kind}>contacts", object_id), set()).add(contact_id)

    def reindex_links(self) -> None:
        """The by-record index rebuilt from the links (after a snapshot is restored)."""
        self._linked = {}
        for kind, links in (("companies", self.company_links), ("deals", self.deal_links)):
            for cid, oid in links:
                self._link(kind, cid, oid)

    def dissociate(self, kind: str, contact_id: str, object_id: str) -> None:
        """An association removed: no timestamp moves."""
        with self.lock:
            links = self.company_links if kind == "companies" else self.deal_links
            links.pop((int(contact_id), int(object_id)), None)
            self._linked.get((f"contacts>{kind}", int(contact_id)), set()).discard(int(object_id))
            self._linked.get((f"{kind}>contacts", int(object_id)), set()).discard(int(contact_id))

    def backdate(self, ms: int) -> None:
        """Seeding: every record (contacts, companies, deals) as if last modified `ms` earlier, so a
        test's setup lies outside the sync's search margin."""
        from .hubspot import iso_ms
        with self.lock:
            for record in list(self.contacts.values()):
                record["modified"] -= ms
                record["properties"]["lastmodifieddate"] = iso_ms(record["modified"])
            for store in self.objects.values():
                for record in store.values():
                    record["modified"] -= ms
                    record["properties"]["hs_lastmodifieddate"] = iso_ms(record["modified"])

    # -- answers ---------------------------------------------------------------------------
    def _live(self, kind: str, oid: int) -> bool:
        if kind == "contacts":
            record = self.contacts.get(oid)
        else:
            record = self.objects[kind].get(oid)
        return record is not None and not record["archived"]

    def _associated(self, from_type: str, to_type: str, oid: int) -> List[Tuple[int, List[Dict[str, Any]]]]:
        """(to id, association types) of one record, by to id; archived records are not listed."""
        out: List[Tuple[int, List[Dict[str, Any]]]] = []
        if from_type == "contacts" and to_type in ("companies", "deals"):
            links = self.company_links if to_type == "companies" else self.deal_links
            for other in self._linked.get((f"contacts>{to_type}", oid), set()):
                if self._live(to_type, other):
                    out.append((other, self._types(from_type, to_type, links[(oid, other)])))
        elif to_type == "contacts" and from_type in ("companies", "deals"):
            links = self.company_links if from_type == "companies" else self.deal_links
            for cid in self._linked.get((f"{from_type}>contacts", oid), set()):
                if self._live("contacts", cid):
                    out.append((cid, self._types(from_type, to_type, links[(cid, oid)])))
        return sorted(out)

    @staticmethod
    def _types(from_type: str, to_type: str, primary: bool) -> List[Dict[str, Any]]:
        types: List[Dict[str, Any]] = [{"category": "HUBSPOT_DEFINED", "typeId": PLAIN_TYPES[(from_type, to_type)],
                                        "label": None}]
        if primary and from_type == "contacts":
            types.insert(0, dict(PRIMARY))
        elif primary:
            types.insert(0, {"category": "HUBSPOT_DEFINED", "typeId": COMPANY_PRIMARY_OF_CONTACT, "label": "Primary"})
        return types

    def on_association_read(self, request: Request, from_type: str, to_type: str, v: str = "") -> Response:
        from .hubspot import _batch_error, _error, iso_ms
        if {from_type, to_type} not in ({"contacts", "companies"}, {"contacts", "deals"}):
            return _error(f"Unknown association {from_type} -> {to_type}", "VALIDATION_ERROR", 400)
        inputs = (self.json_body(request) or {}).get("inputs")  # type: ignore[attr-defined]
        if not isinstance(inputs, list) or not all(isinstance(i, dict) and str(i.get("id", "")).isdigit()
                                                   for i in inputs):
            return _error("Invalid input JSON: inputs need an id", "VALIDATION_ERROR", 400)
        if len(inputs) > ASSOCIATION_BATCH_MAX:
            return _error(f"Batch read is limited to {ASSOCIATION_BATCH_MAX} inputs", "VALIDATION_ERROR", 400)
        results, empty, failed = [], [], []
        for item in inputs:
            oid = int(item["id"])
            if str(oid) in self.association_failures:
                failed.append(str(oid))
                continue
            links = self._associated(from_type, to_type, oid) if self._live(from_type, oid) else []
            start = int(item.get("after") or 0)
            page = links[start:start + self.association_page_size]
            if not links and self.no_associations == "207":
                empty.append(str(oid))
                continue
            result: Dict[str, Any] = {"from": {"id": str(oid)},
                                      "to": [{"toObjectId": str(to) if self.association_ids == "string" else to,
                                              "associationTypes": types} for to, types in page]}
            if start + self.association_page_size < len(links):
                result["paging"] = {"next": {"after": str(start + self.association_page_size)}}
            results.append(result)
        stamp = iso_ms(self.now_ms())  # type: ignore[attr-defined]
        out: Dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": stamp, "completedAt": stamp}
        if empty or failed:
            out["numErrors"] = len(empty) + len(failed)
            out["errors"] = ([_batch_error("NO_ASSOCIATIONS_FOUND", f"No {to_type} is associated", [i]) for i in empty]
                             + [_batch_error("INTERNAL_ERROR", "Could not read associations", [i]) for i in failed])
            return self.ok(out, 207)  # type: ignore[attr-defined]
        return self.ok(out)  # type: ignore[attr-defined]

    def _render_object(self, kind: str, oid: int, wanted: Optional[List[str]]) -> Dict[str, Any]:
        from .hubspot import iso_ms
        record = self.objects[kind][oid]
        defined = {p["name"] for p in self.object_properties[kind]}
        names = [n for n in (wanted or ["name", "dealname"]) if n in defined or n in record["properties"]]
        out = {n: record["properties"].get(n) for n in names}
        for always in ("createdate", "hs_lastmodifieddate", "hs_object_id"):
            out[always] = record["properties"].get(always)
        return {"id": str(oid), "properties": out, "createdAt": iso_ms(record["created"]),
                "updatedAt": iso_ms(record["modified"]), "archived": record["archived"]}

    def on_object_batch_read(self, request: Request, object_type: str, v: str = "") -> Response:
        from .hubspot import batch_read_refusal
        body = self.json_body(request) or {}  # type: ignore[attr-defined]
        refusal = batch_read_refusal(body)
        if refusal is not None:
            return refusal
        inputs = body.get("inputs") or []
        results, missing = [], []
        for item in inputs:
            oid = str(item.get("id", ""))
            if oid.isdigit() and self._live(object_type, int(oid)):
                results.append(self._render_object(object_type, int(oid), body.get("properties")))
            else:
                missing.append(oid)
        return self._batch_read_answer(results, missing)  # type: ignore[attr-defined]

    def on_object_search(self, request: Request, object_type: str, v: str = "") -> Response:
        from .hubspot import SEARCH_RESULT_CAP, _error, filters_match
        body = self.json_body(request) or {}  # type: ignore[attr-defined]
        problem = self._search_problem(body)  # type: ignore[attr-defined]
        if problem:
            return _error(f"Invalid input JSON: {problem}", "VALIDATION_ERROR", 400)
        limit, offset = int(body.get("limit", 10)), int(body.get("after") or 0)
        if limit > 200:
            return _error("limit must be at most 200", "VALIDATION_ERROR", 400)
        if offset + limit > SEARCH_RESULT_CAP:
            return _error("There was a problem with the request.", "VALIDATION_ERROR", 400,
                          errors=[{"message": f"Paging past {SEARCH_RESULT_CAP} results is not supported"}])
        store = self.objects[object_type]

        groups = body.get("filterGroups") or []
        ids = sorted(oid for oid, r in store.items() if not r["archived"]
                     and (not groups or any(filters_match(oid, store[oid], g.get("filters", []), "hs_lastmodifieddate")
                                          for g in groups)))
        sort = str((body.get("sorts") or ["hs_object_id"])[0]).lstrip("-")
        if sort == "hs_lastmodifieddate":
            ids.sort(key=lambda o: store[o]["modified"])
        page = ids[offset:offset + limit]
        out: Dict[str, Any] = {"total": len(ids),
                               "results": [self._render_object(object_type, o, body.get("properties")) for o in page]}
        if offset + limit < len(ids):
            out["paging"] = {"next": {"after": str(offset + limit)}}
        return self.json_response(out)  # type: ignore[attr-defined]

    def on_object_properties(self, request: Request, object_type: str, v: str = "") -> Response:
        return self.ok({"results": self.object_properties[object_type]})  # type: ignore[attr-defined]

    def on_deal_pipelines(self, request: Request, v: str = "") -> Response:
        return self.ok({"results": self.pipelines})  # type: ignore[attr-defined]
