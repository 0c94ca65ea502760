from unittest.mock import patch

from odoo.tests import tagged

from ..models.res_partner import CACHE_SEQUENCE, _cr_flags
from .common import AsteriskCase


@tagged("post_install", "-at_install")
class TestPartnerMatching(AsteriskCase):

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Partner = cls.env["res.partner"]
        cls.france = cls.env.ref("base.fr")

    def lookup(self, number, country=None):
        return self.Partner.get_partner_by_number(number, country)

    def test_normalized_fields_use_partner_then_parent_country(self):
        company = self.Partner.create({"name": "ACME SARL", "is_company": True, "country_id": self.france.id,
                                       "phone": "01 42 68 53 00"})
        contact = self.Partner.create({"name": "Jean", "parent_id": company.id, "mobile": "06 12 34 56 78"})
        german = self.Partner.create({"name": "Hans", "country_id": self.germany.id, "phone": "(030) 901820-0"})
        self.assertEqual(company.phone_normalized, "+33142685300")
        self.assertEqual(contact.mobile_normalized, "+33612345678", "a contact without country uses its company's")
        self.assertEqual(german.phone_normalized, "+49309018200")
        german.country_id = self.france
        self.assertEqual(german.phone_normalized, "+33309018200", "recomputed when the country changes")
        junk = self.Partner.create({"name": "Junk", "phone": "1", "country_id": self.germany.id})
        self.assertEqual(junk.phone_normalized, "+1", "a number that does not parse is stored as +digits")
        self.assertEqual(self.Partner._asterisk_format_e164("0049 (30) 901-820"), "+4930901820")
        self.assertFalse(self.Partner._asterisk_format_e164("ext."))

    def test_lookup_candidates(self):
        partner = self.Partner.create({"name": "Hans", "country_id": self.germany.id, "phone": "030 901820"})
        self.assertEqual(self.lookup("+4930901820")["id"], partner.id)
        self.assertEqual(self.lookup("004930901820")["id"], partner.id, "00 becomes +")
        self.assertEqual(self.lookup("+49 (30) 901-820")["id"], partner.id)
        self.assertEqual(self.lookup("030901820", "DE")["id"], partner.id, "national format with a country")
        self.assertEqual(self.lookup("030901820")["id"], partner.id, "the server's country (DE) is the fallback")
        self.assertEqual(self.lookup("030901820", "FR"), {"id": False, "name": "Unknown"})
        self.assertEqual(self.lookup("+4930901820")["name"], "Hans")

    def test_ignored_numbers(self):
        self.Partner.create({"name": "Short", "phone": "+1234"})
        for number in ("", "s", "anonymous", "Anonymous", "<unknown>", "unknown", "12345", "+1234"):
            self.assertEqual(self.lookup(number), {"id": False, "name": "Unknown"}, number)

    def test_disambiguation(self):
        company = self.Partner.create({"name": "ACME", "is_company": True, "phone": "+33142685300"})
        contact = self.Partner.create({"name": "Jean", "parent_id": company.id, "phone": "+33142685300"})
        self.assertEqual(self.lookup("+33142685300")["id"], contact.id, "parent and child: the child")

        company2 = self.Partner.create({"name": "Beta", "is_company": True})
        self.Partner.create({"name": "Ann", "parent_id": company2.id, "phone": "+33142685311"})
        self.Partner.create({"name": "Ben", "parent_id": company2.id, "phone": "+33142685311"})
        self.assertEqual(self.lookup("+33142685311")["id"], company2.id, "several children of one company")

        self.Partner.create({"name": "Gamma", "is_company": True, "phone": "+33142685322"})
        self.Partner.create({"name": "Delta", "is_company": True, "phone": "+33142685322"})
        self.assertFalse(self.lookup("+33142685322")["id"], "unrelated companies: no match")

        old = self.Partner.create({"name": "Old", "phone": "+33142685333"})
        new = self.Partner.create({"name": "New", "phone": "+33142685333"})
        self.env.cr.execute("UPDATE res_partner SET write_date = now() - interval '1 day' WHERE id = %s", (old.id,))
        self.env.invalidate_all()
        self.assertEqual(self.lookup("+33142685333")["id"], new.id, "several without parent: most recent")

    def test_like_and_suffix_matching(self):
        partner = self.Partner.create({"name": "Prefix", "phone": "+33142685300"})
        self.assertFalse(self.lookup("+331426853")["id"])
        self.settings.number_search_operation = "like"
        self.assertEqual(self.lookup("+331426853")["id"], partner.id)
        self.settings.number_search_operation = "="
        self.assertFalse(self.lookup("0033 9 99 68 53 00")["id"])
        self.settings.number_match_suffix_digits = 6
        self.assertEqual(self.lookup("0033 9 99 68 53 00")["id"], partner.id, "last 6 digits")

    def _commit_simulated(self):
        """What the postcommit hook does: forget the dirty flag, bump the generation."""
        _cr_flags(self.env.cr).clear()
        self.env.cr.execute("SELECT nextval(%s)", (CACHE_SEQUENCE,))

    def test_cache_hit_and_targeted_invalidation(self):
        partner = self.Partner.create({"name": "Cached", "phone": "+33142685300"})
        self.assertTrue(_cr_flags(self.env.cr).get("dirty"), "a partner write marks the transaction")
        self._commit_simulated()
        self.assertEqual(self.lookup("+33142685300", "FR")["id"], partner.id)
        cache = self.Partner._asterisk_cache()
        self.assertTrue(any(key[0] == "+33142685300" for key in list(cache.d)))
        # A hit costs one query: reading the generation.
        with self.assertQueryCount(1):
            self.assertEqual(self.lookup("+33142685300", "FR")["id"], partner.id)
        # Changing the phone is visible at once in the same transaction, and
        # it clears none of Odoo's own caches.
        registry_cls = type(self.env.registry)
        with patch.object(registry_cls, "clear_cache", autospec=True) as clear_cache, \
                patch.object(registry_cls, "clear_all_caches", autospec=True) as clear_all:
            partner.phone = "+33142685399"
            self.assertFalse(self.lookup("+33142685300", "FR")["id"])
            self.assertEqual(self.lookup("+33142685399", "FR")["id"], partner.id)
        clear_cache.assert_not_called()
        clear_all.assert_not_called()
        # Other workers see it after the commit, through the new generation.
        self._commit_simulated()
        self.assertFalse(self.lookup("+33142685300", "FR")["id"])

    def test_partner_call_count_and_action(self):
        partner = self.Partner.create({"name": "Counted", "phone": "+33142685300"})
        self.env["asterisk_plus.call"].create({"uniqueid": "x.1", "server": self.server.id, "partner": partner.id})
        self.assertEqual(partner.call_count, 1)
        outsider = self.env["res.users"].with_context(no_reset_password=True).create({
            "name": "Outsider", "login": "outsider", "groups_id": [(6, 0, [self.env.ref("base.group_user").id])]})
        self.assertEqual(partner.with_user(outsider).call_count, 0, "no PBX access: no count, no error")
        self.assertEqual(partner.with_user(self.alice).call_count, 0, "not one of Alice's calls")
        action = partner.action_view_calls()
        self.assertEqual(action["res_model"], "asterisk_plus.call")
