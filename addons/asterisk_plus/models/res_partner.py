import logging
import re
import threading

import phonenumbers

from odoo import _, api, fields, models
from odoo.exceptions import UserError
from odoo.tools.lru import LRU

from .common import clean_number

_logger = logging.getLogger(__name__)

UNKNOWN = {"id": False, "name": "Unknown"}
CACHE_SEQUENCE = "asterisk_plus_partner_match_seq"
CACHE_SIZE = 4096
# Writing any of these can change what a number matches.
MATCH_FIELDS = {"phone", "mobile", "parent_id", "country_id", "is_company", "active", "name", "company_id", "commercial_partner_id"}
_cache_lock = threading.Lock()


def _cr_flags(cr):
    """Flags of the database transaction behind `cr` (commit/rollback hooks reset them).

    Test cursors wrap the real one and share its transaction, so they share
    its flags too."""
    cr = getattr(cr, "_cursor", cr)
    return cr.__dict__.setdefault("_asterisk_plus_flags", {})


class ResPartner(models.Model):
    _inherit = "res.partner"

    phone_normalized = fields.Char(compute="_compute_normalized", store=True, index=True, string="Phone (E.164)")
    mobile_normalized = fields.Char(compute="_compute_normalized", store=True, index=True, string="Mobile (E.164)")
    phone_extension = fields.Char(help="DTMF digits sent after the call is answered (e.g. an extension behind an IVR).")
    asterisk_calls = fields.One2many("asterisk_plus.call", "partner")
    call_count = fields.Integer(compute="_compute_call_count", string="Calls")

    # ---------------------------------------------------------- storage
    def _asterisk_own_country_code(self):
        """Country for normalising: the partner's, its parent's, its company's."""
        self.ensure_one()
        country = self.country_id or self.parent_id.country_id or self.company_id.country_id or self.env.company.country_id
        return country.code or None

    @api.model
    def _asterisk_server_country(self):
        server = self.env["asterisk_plus.server"].sudo().search([("country_id", "!=", False)], limit=1)
        return server.country_id.code or ""

    @api.model
    def _asterisk_format_e164(self, number, country_code=None):
        """E.164 of `number`; `+<digits>` when it does not parse; False when empty."""
        number = clean_number(number)
        digits = re.sub(r"\D", "", number)
        if not digits:
            return False
        try:
            parsed = phonenumbers.parse(number, (country_code or "").upper() or None)
        except phonenumbers.NumberParseException:
            return "+" + digits
        if not phonenumbers.is_possible_number(parsed):
            return "+" + digits
        return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)

    @api.depends("phone", "mobile", "country_id", "parent_id.country_id", "company_id.country_id")
    def _compute_normalized(self):
        server_country = False  # the last resort, looked up once per batch and only if needed
        for partner in self:
            code = None
            if partner.phone or partner.mobile:
                code = partner._asterisk_own_country_code()
                if not code:
                    if server_country is False:
                        server_country = self._asterisk_server_country() or None
                    code = server_country
            partner.phone_normalized = self._asterisk_format_e164(partner.phone, code) if partner.phone else False
            partner.mobile_normalized = self._asterisk_format_e164(partner.mobile, code) if partner.mobile else False

    def _compute_call_count(self):
        Call = self.env["asterisk_plus.call"]
        if not Call.check_access_rights("read", raise_exception=False):
            self.call_count = 0
            return
        data = Call._read_group([("partner", "in", self.ids)], ["partner"], ["__count"])
        counts = {partner.id: count for partner, count in data}
        for partner in self:
            partner.call_count = counts.get(partner.id, 0)

    # ------------------------------------------------------------ cache
    def init(self):
        self.env.cr.execute("CREATE SEQUENCE IF NOT EXISTS %s" % CACHE_SEQUENCE)

    @api.model
    def _asterisk_cache(self):
        registry = self.env.registry
        cache = getattr(registry, "_asterisk_plus_partner_cache", None)
        if cache is None:
            with _cache_lock:
                cache = getattr(registry, "_asterisk_plus_partner_cache", None)
                if cache is None:
                    cache = registry._asterisk_plus_partner_cache = LRU(CACHE_SIZE)
        return cache

    @api.model
    def _asterisk_cache_generation(self):
        self.env.cr.execute("SELECT last_value, is_called FROM %s" % CACHE_SEQUENCE)
        last_value, is_called = self.env.cr.fetchone()
        return last_value if is_called else 0

    @api.model
    def _asterisk_cache_invalidate(self):
        """Invalidate the number lookup cache only (never Odoo's other caches).

        The current transaction bypasses the cache from now on; other
        workers see the bumped generation once this transaction commits.
        """
        cr = self.env.cr
        flags = _cr_flags(cr)
        flags["dirty"] = True
        if flags.get("hooks"):
            return
        flags["hooks"] = True
        registry = self.env.registry
        dbname = cr.dbname

        @cr.postcommit.add
        def bump():
            flags.clear()
            cache = getattr(registry, "_asterisk_plus_partner_cache", None)
            if cache is not None:
                cache.clear()
            from odoo.sql_db import db_connect
            with db_connect(dbname).cursor() as bump_cr:
                bump_cr.execute("SELECT nextval(%s)", (CACHE_SEQUENCE,))

        @cr.postrollback.add
        def forget():
            flags.clear()

    @api.model_create_multi
    def create(self, vals_list):
        partners = super().create(vals_list)
        if any(vals.get("phone") or vals.get("mobile") for vals in vals_list):
            self._asterisk_cache_invalidate()
        return partners

    def write(self, vals):
        res = super().write(vals)
        if MATCH_FIELDS.intersection(vals):
            self._asterisk_cache_invalidate()
        return res

    def unlink(self):
        res = super().unlink()
        self._asterisk_cache_invalidate()
        return res

    # ---------------------------------------------------------- matching
    @api.model
    def get_partner_by_number(self, number, country=None):
        """Partner for a phone number (§9.5): `{'id': id or False, 'name': str}`."""
        number = clean_number(number)
        settings = self.env["asterisk_plus.settings"].get_settings()
        low = number.lower()
        if (not number or low == "s" or "unknown" in low or "anonymous" in low
                or len(number.lstrip("+")) < settings.min_external_number_length):
            return dict(UNKNOWN)
        if not country:
            country = self._asterisk_server_country() or None
        key = (number, (country or "").upper(), settings.number_search_operation, settings.number_match_suffix_digits)
        if _cr_flags(self.env.cr).get("dirty"):
            return self._asterisk_match(number, country, settings)
        generation = self._asterisk_cache_generation()
        cache = self._asterisk_cache()
        hit = cache.get(key)
        if hit is not None and hit[0] == generation:
            return dict(hit[1])
        result = self._asterisk_match(number, country, settings)
        cache[key] = (generation, dict(result))
        return result

    @api.model
    def _asterisk_candidates(self, number, country):
        digits = re.sub(r"\D", "", number)
        candidates = ["+" + digits, digits]
        e164 = self._asterisk_format_e164(number, country)
        if e164:
            candidates.append(e164)
        seen = []
        for c in candidates:
            if c and c not in seen:
                seen.append(c)
        return seen

    @api.model
    def _asterisk_match(self, number, country, settings):
        Partner = self.sudo().with_context(active_test=True)
        partners = Partner.browse()
        for candidate in self._asterisk_candidates(number, country):
            if settings.number_search_operation == "like":
                domain = ["|", ("phone_normalized", "=like", candidate + "%"), ("mobile_normalized", "=like", candidate + "%")]
            else:
                domain = ["|", ("phone_normalized", "=", candidate), ("mobile_normalized", "=", candidate)]
            partners = Partner.search(domain, limit=50)
            if partners:
                break
        suffix = settings.number_match_suffix_digits
        if not partners and suffix and suffix > 0:
            digits = re.sub(r"\D", "", number)
            if len(digits) >= suffix:
                tail = "%" + digits[-suffix:]
                partners = Partner.search(["|", ("phone_normalized", "=like", tail), ("mobile_normalized", "=like", tail)], limit=50)
        partner = self._asterisk_disambiguate(partners)
        if not partner:
            return dict(UNKNOWN)
        return {"id": partner.id, "name": partner.display_name}

    @api.model
    def _asterisk_disambiguate(self, partners):
        """§9.5.3: one → it; parent+child → child; children of one company → the company;
        unrelated companies → none; several without parent → most recently updated."""
        if len(partners) <= 1:
            return partners
        # A parent matched together with its own contact: the contact is more precise.
        partners = partners.filtered(lambda p: not (partners - p).filtered(lambda c: c.parent_id == p))
        if len(partners) == 1:
            return partners
        commercial = partners.commercial_partner_id
        if len(commercial) == 1:
            return commercial
        if len(commercial.filtered("is_company")) > 1:
            return partners.browse()
        return partners.sorted(lambda p: (p.write_date or fields.Datetime.now(), p.id), reverse=True)[:1]

    # --------------------------------------------------------------- UI
    def action_view_calls(self):
        self.ensure_one()
        action = self.env["ir.actions.act_window"]._for_xml_id("asterisk_plus.action_call_history")
        action["domain"] = [("partner", "child_of", self.commercial_partner_id.id)]
        action["context"] = {"default_partner": self.id}
        return action

    def action_originate_call(self):
        self.ensure_one()
        number = self.env.context.get("asterisk_number") or self.phone or self.mobile
        if not number:
            raise UserError(_("%s has no phone number.", self.display_name))
        self.env["asterisk_plus.server"].originate_call(number, self._name, self.id)
        return {
            "type": "ir.actions.client",
            "tag": "display_notification",
            "params": {"title": _("PBX"), "message": _("Calling %s", number), "type": "info", "sticky": False},
        }
