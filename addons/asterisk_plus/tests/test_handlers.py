import json
from datetime import datetime, timezone

from odoo.exceptions import AccessError
from odoo.tests import tagged

from .common import AsteriskCase, BASE_TIME, ami_events, enrich

CALL_05C = "05c-sip-call-101-to-ext-100.txt"
CALL_05D = "05d-sip-click-to-call-originate-pjsip-102.txt"
CALL_02 = "02-originate-local-call.txt"
VARIANTS_04D = "04d-action-originate-variants.txt"
CHANNEL_EVENTS = {"Newchannel", "Newstate", "Hangup"}


def utc(ts):
    return datetime.fromtimestamp(ts, tz=timezone.utc).replace(tzinfo=None)


def second_leg(template, channel, uniqueid, state, state_desc):
    """A dialled leg built from a recorded event of the same call: same
    headers, another channel (the fixtures have no two-leg PJSIP call)."""
    leg = dict(template)
    leg.update(Channel=channel, Uniqueid=uniqueid, ChannelState=state, ChannelStateDesc=state_desc,
               CallerIDNum="100", CallerIDName="Ext 100")
    return leg


@tagged("post_install", "-at_install")
class TestCallHandlers(AsteriskCase):

    def test_05c_internal_call_from_pbx_user_phone(self):
        """05c: 101 calls ext 100, the dialplan answers and hangs up (cause 16)."""
        self.make_pbx_user(self.alice, "101", ["PJSIP/101"])
        self.make_pbx_user(self.bob, "100", ["PJSIP/100"])
        events = enrich(ami_events(CALL_05C))
        delivered = self.replay_map(events)
        self.assertEqual(
            [m for _e, m in delivered],
            ["on_fully_booted", "on_ami_new_channel", "on_ami_update_channel_state", "on_ami_hangup"],
            "the default map picks FullyBooted, then Newchannel, Newstate Up and Hangup of the PJSIP channel",
        )
        events = [e for e in events if e["Event"] in CHANNEL_EVENTS]
        call = self.call_by_uniqueid("1795627331.19")
        self.assertEqual(len(call), 1)
        self.assertEqual(call.direction, "out")
        self.assertEqual(call.calling_user, self.alice)
        self.assertFalse(call.direction_by_length)
        self.assertEqual(call.calling_number, "101")
        self.assertEqual(call.called_number, "100")
        self.assertEqual(call.called_users, self.bob)
        # Primary Up, cause 16, no second leg: the dialplan answered.
        self.assertEqual(call.status, "ended")
        self.assertFalse(call.is_active)
        self.assertFalse(call.answered)
        self.assertEqual(call.started, utc(events[0]["EventTime"]))
        self.assertEqual(call.ended, utc(events[-1]["EventTime"]))
        channel = call.channels
        self.assertEqual(channel.channel, "PJSIP/101-00000000")
        self.assertEqual(channel.channel_short, "PJSIP/101")
        self.assertTrue(channel.is_primary)
        self.assertEqual(channel.user, self.alice)
        self.assertEqual(channel.cause, "16")
        self.assertEqual(channel.cause_txt, "Normal Clearing")
        self.assertFalse(channel.is_active)
        self.assertEqual(len(call.events), 3)
        channel_name = json.dumps([self.env.cr.dbname, "asterisk_plus_actions"], separators=(",", ":"))
        reloads = self.env["bus.bus"].sudo().search([("channel", "=", channel_name)])
        self.assertTrue(reloads)
        self.assertEqual({json.loads(r.message)["payload"]["model"] for r in reloads}, {"asterisk_plus.call"})

    def test_05c_unknown_short_caller_is_outgoing_by_length(self):
        events = enrich(ami_events(CALL_05C, names=CHANNEL_EVENTS))
        self.replay_map(events)
        call = self.call_by_uniqueid("1795627331.19")
        self.assertEqual(call.direction, "out")
        self.assertTrue(call.direction_by_length)
        self.assertFalse(call.calling_user)

    def _inbound_events(self, answered=True, number="+49 30 901820"):
        """05c with an external caller, plus the dialled leg to Bob's phone."""
        base = ami_events(CALL_05C, names=CHANNEL_EVENTS)
        base = [dict(e, CallerIDNum=number, CallerIDName="Customer") for e in base]
        newchannel, newstate, hangup = base
        leg_ring = second_leg(newchannel, "PJSIP/100-00000001", "1795627331.20", "5", "Ringing")
        leg_ring["Event"] = "Newchannel"
        events = [newchannel, newstate, leg_ring]
        if answered:
            events.append(dict(second_leg(newchannel, "PJSIP/100-00000001", "1795627331.20", "6", "Up"), Event="Newstate"))
        leg_hangup = second_leg(hangup, "PJSIP/100-00000001", "1795627331.20", "6" if answered else "5",
                                "Up" if answered else "Ringing")
        events += [hangup, leg_hangup]
        return enrich(events, step=3)

    def test_inbound_answered_partner_popup_and_summary(self):
        partner = self.env["res.partner"].create({"name": "Customer GmbH", "phone": "030 901820",
                                                  "country_id": self.germany.id, "is_company": True})
        self.make_pbx_user(self.bob, "100", ["PJSIP/100"]).open_reference = True
        events = self._inbound_events(answered=True)
        self.replay_map(events)
        call = self.call_by_uniqueid("1795627331.19")
        self.assertEqual(call.direction, "in")
        self.assertEqual(call.partner, partner)
        self.assertEqual(call.called_users, self.bob)
        self.assertEqual(call.status, "answered")
        self.assertEqual(call.answered_user, self.bob)
        self.assertEqual(call.answered, utc(events[3]["EventTime"]))
        # Duration: answered (event 3) to the primary hangup (event 4), 3 s apart.
        self.assertEqual(call.duration, 3)
        self.assertFalse(call.is_missed)
        self.assertEqual(len(call.channels), 2)
        popups = self.bus_messages(self.bob, "asterisk_plus_notify")
        self.assertEqual(len(popups), 1, "one popup per called user")
        self.assertEqual(popups[0]["partner_id"], partner.id)
        self.assertIn("Customer GmbH", popups[0]["message"])
        self.assertIn("+4930901820", popups[0]["number"])
        self.assertFalse(popups[0]["sticky"])
        self.assertEqual(self.bus_messages(self.bob, "open_record"), [{"model": "res.partner", "res_id": partner.id}])
        summary = partner.message_ids.filtered(lambda m: "Incoming call" in (m.body or ""))
        self.assertEqual(len(summary), 1)
        self.assertIn("answered by Bob", summary.body)
        self.assertEqual(summary.author_id, self.bob.partner_id)
        # Users see their own calls only; supervisors see all.
        self.assertIn(call, self.env["asterisk_plus.call"].with_user(self.bob).search([]))
        call.with_user(self.bob).write({"notes": "<p>wants a quote</p>"})
        with self.assertRaises(AccessError):
            call.with_user(self.bob).write({"status": "noanswer"})
        self.assertNotIn(call, self.env["asterisk_plus.call"].with_user(self.alice).search([]))
        self.alice.groups_id = [(4, self.env.ref("asterisk_plus.group_asterisk_supervisor").id)]
        self.assertIn(call, self.env["asterisk_plus.call"].with_user(self.alice).search([]))

    def test_inbound_missed_notifies_called_user(self):
        partner = self.env["res.partner"].create({"name": "Caller", "phone": "+49 30 901820"})
        pbx_bob = self.make_pbx_user(self.bob, "100", ["PJSIP/100"])
        pbx_bob.call_popup_is_sticky = True
        self.replay_map(self._inbound_events(answered=False))
        call = self.call_by_uniqueid("1795627331.19")
        # Caller hung up (cause 16) while a second channel rang: no answer.
        self.assertEqual(call.partner, partner)
        self.assertEqual(call.status, "noanswer")
        self.assertTrue(call.is_missed)
        self.assertFalse(call.answered_user)
        notes = self.bus_messages(self.bob, "asterisk_plus_notify")
        self.assertTrue(notes[0]["sticky"], "popup stickiness follows the user's preference")
        self.assertEqual(self.bus_messages(self.bob, "open_record"), [], "auto-open is off by default")
        missed = [n for n in notes if "Missed call" in n["title"]]
        self.assertEqual(len(missed), 1)
        activity = self.env["mail.activity"].search([("res_model", "=", "asterisk_plus.call"), ("res_id", "=", call.id)])
        self.assertEqual(activity.user_id, self.bob)
        self.assertIn("Missed call from Caller", activity.summary)
        self.assertIn(call, self.env["asterisk_plus.call"].with_user(self.bob).search([("activity_user_id", "=", self.bob.id)]))

    def test_missed_call_from_unknown_number(self):
        self.make_pbx_user(self.bob, "100", ["PJSIP/100"])
        self.replay_map(self._inbound_events(answered=False, number="+33 1 99 00 11 22"))
        call = self.call_by_uniqueid("1795627331.19")
        self.assertFalse(call.partner, "auto_create_partners is off by default")
        self.assertTrue(call.is_missed)
        self.assertEqual(call.activity_ids.user_id, self.bob)
        self.assertIn("+33199001122", call.activity_ids.summary)

    def test_auto_create_partner_for_unknown_caller(self):
        self.settings.auto_create_partners = True
        self.make_pbx_user(self.bob, "100", ["PJSIP/100"])
        self.replay_map(self._inbound_events(answered=True, number="+33 1 99 00 11 22"))
        call = self.call_by_uniqueid("1795627331.19")
        self.assertEqual(call.partner.phone, "+33199001122")
        self.assertEqual(call.partner.name, "Customer")
        self.assertEqual(self.env["res.partner"].get_partner_by_number("+33199001122")["id"], call.partner.id)
        # Internal numbers never create partners.
        self.replay_map(enrich([dict(e, Uniqueid="2.1", Linkedid="2.1") for e in ami_events(CALL_05C, names={"Newchannel"})]))
        self.assertFalse(self.call_by_uniqueid("2.1").partner)

    def test_02_local_call_answered_by_second_leg(self):
        """02: Local/200 dials Local/100, which answers; Bob owns Local/100@test."""
        self.make_pbx_user(self.bob, "100", ["Local/100@test"])
        events = enrich(ami_events(CALL_02, names={"Newchannel", "Newstate", "Hangup"}))
        self.replay_handlers(events)
        call = self.call_by_uniqueid("1795627163.0")
        self.assertEqual(len(call), 1)
        self.assertEqual(len(call.channels), 4)
        # An unknown short caller first looks outgoing; Bob's leg turns it into incoming.
        self.assertEqual(call.direction, "in")
        self.assertFalse(call.direction_by_length)
        self.assertEqual(call.status, "answered")
        self.assertEqual(call.answered_user, self.bob)
        self.assertEqual(call.called_users, self.bob)
        self.assertFalse(call.is_active)
        self.assertFalse(call.channels.filtered("is_active"))
        popups = self.bus_messages(self.bob, "asterisk_plus_notify")
        self.assertEqual(len(popups), 1, "two legs of one user still give one popup")

    def _originate_block(self, action_id):
        """Events of one Originate of 04d, identified by its ActionID."""
        events = ami_events(VARIANTS_04D)
        response = next(e for e in events if e["Event"] == "OriginateResponse" and e.get("ActionID") == action_id)
        idx = events.index(response)
        dial = response["Channel"]  # the dial string, e.g. Local/500@test
        block = [e for e in events if e.get("Channel", "").startswith(dial + "-") and e["Event"] in ("Newchannel", "Newstate", "Hangup")]
        first, last = events.index(block[0]), events.index(block[-1])
        ordered = [e for e in events[first:max(last, idx) + 1]
                   if e is response or e in block]
        return ordered

    def _replay_with_response(self, events):
        for event in enrich(events):
            if event["Event"] == "OriginateResponse":
                self.deliver(event, "asterisk_plus.channel", "on_ami_originate_response_failure")
            else:
                self.replay_handlers([event])

    def test_04d_busy(self):
        events = self._originate_block("orig-busy")
        self._replay_with_response(events)
        call = self.call_by_uniqueid("1795627226.12")
        self.assertEqual(call.status, "busy")
        self.assertTrue(call.originate_failed)
        self.assertFalse(call.is_active)
        primary = call.channels.filtered("is_primary")
        self.assertEqual(primary.cause, "0", "the later Hangup still records its cause")

    def test_04d_no_answer(self):
        self._replay_with_response(self._originate_block("orig-noanswer"))
        call = self.call_by_uniqueid("1795627246.14")
        self.assertEqual(call.status, "noanswer")
        self.assertFalse(call.is_active)

    def test_04d_failed(self):
        self._replay_with_response(self._originate_block("orig-fail-async"))
        call = self.call_by_uniqueid("1795627222.8")
        self.assertEqual(call.status, "failed")
        self.assertFalse(call.is_active)

    def test_04d_hangup_without_originate_response(self):
        """Busy from the Hangup cause alone: the busy leg hangs up with 17 (§9.4)."""
        events = [e for e in self._originate_block("orig-busy") if e["Event"] != "OriginateResponse"]
        # Make the busy leg's hangup the primary's: cause 17 on the primary.
        for e in events:
            if e["Event"] == "Hangup" and e["Uniqueid"] == "1795627226.12":
                e["Cause"], e["Cause-txt"] = "17", "User busy"
        self.replay_handlers(enrich(events))
        self.assertEqual(self.call_by_uniqueid("1795627226.12").status, "busy")

    def test_originate_failure_ignored_after_hangup(self):
        events = self._originate_block("orig-busy")
        response = next(e for e in events if e["Event"] == "OriginateResponse")
        others = [e for e in events if e is not response]
        self.replay_handlers(enrich(others))
        call = self.call_by_uniqueid("1795627226.12")
        status = call.status
        result = self.deliver(enrich([response])[0], "asterisk_plus.channel", "on_ami_originate_response_failure")
        self.assertFalse(result, "no live channel is left for that dial string")
        self.assertEqual(call.status, status)

    def test_duplicate_delivery_is_dropped(self):
        self.make_pbx_user(self.alice, "101", ["PJSIP/101"])
        newchannel, newstate, hangup = enrich(ami_events(CALL_05C, names=CHANNEL_EVENTS))
        first = self.deliver(newchannel, "asterisk_plus.channel", "on_ami_new_channel")
        self.assertIn("call", first)
        again = self.deliver(newchannel, "asterisk_plus.channel", "on_ami_new_channel")
        self.assertEqual(again, {"duplicate": True})
        call = self.call_by_uniqueid("1795627331.19")
        self.assertEqual(len(call.events), 1, "the duplicate left no trace")
        receipts = self.env["asterisk_plus.event_receipt"].search([("key", "=", newchannel["AgentEventId"])])
        self.assertEqual(receipts.target, "asterisk_plus.channel.on_ami_new_channel")
        # The same AgentEventId delivered to another handler of the same event runs.
        other = self.deliver(newchannel, "asterisk_plus.call", "on_user_event_set_transfer")
        self.assertTrue(other)
        self.assertTrue(call.is_transfer)
        # A hangup delivered twice ends the call once.
        self.deliver(hangup, "asterisk_plus.channel", "on_ami_hangup")
        ended = call.ended
        self.assertEqual(self.deliver(hangup, "asterisk_plus.channel", "on_ami_hangup"), {"duplicate": True})
        self.assertEqual(call.ended, ended)
        # Without an AgentEventId (an older agent) the handler just runs.
        plain = dict(newstate)
        plain.pop("AgentEventId")
        self.assertTrue(self.deliver(plain, "asterisk_plus.channel", "on_ami_update_channel_state"))
        self.assertTrue(self.deliver(plain, "asterisk_plus.channel", "on_ami_update_channel_state"))

    def test_handlers_refuse_other_users(self):
        newchannel = enrich(ami_events(CALL_05C, names=CHANNEL_EVENTS))[0]
        with self.assertRaises(AccessError):
            self.env["asterisk_plus.channel"].with_user(self.alice).on_ami_new_channel(newchannel)
        self.assertFalse(self.call_by_uniqueid("1795627331.19"))

    def test_agent_of_another_server_does_not_see_calls(self):
        other = self.env["asterisk_plus.server"].create({"name": "Other PBX"})
        self.replay_map(enrich(ami_events(CALL_05C, names=CHANNEL_EVENTS)))
        hangup = enrich(ami_events(CALL_05C, names={"Hangup"}))[0]
        result = self.env["asterisk_plus.channel"].with_user(other.user).on_ami_hangup(hangup)
        self.assertFalse(result, "another server's agent cannot touch this server's channels")

    def test_channels_snapshot_closes_missed_hangups(self):
        self.make_pbx_user(self.alice, "101", ["PJSIP/101"])
        newchannel, newstate, _hangup = enrich(ami_events(CALL_05C, names=CHANNEL_EVENTS))
        self.replay_map([newchannel, newstate])
        call = self.call_by_uniqueid("1795627331.19")
        self.assertTrue(call.is_active)
        # A live channel stays; the one missing from the snapshot is closed.
        snapshot = enrich([{"Event": "AgentChannelsSnapshot", "Uniqueids": ["9999.1"], "GapSeconds": "12"}],
                          start=BASE_TIME + 30)[0]
        result = self.deliver(snapshot, "asterisk_plus.channel", "on_agent_channels_snapshot")
        self.assertEqual(result, {"closed": 1})
        self.assertFalse(call.is_active)
        self.assertEqual(call.status, "ended")
        # Channels created after the snapshot was taken are never closed by it.
        newer = enrich([dict(newchannel, Uniqueid="1795627400.1", Linkedid="1795627400.1")], start=BASE_TIME + 60)[0]
        self.deliver(newer, "asterisk_plus.channel", "on_ami_new_channel")
        result = self.deliver(dict(snapshot, AgentEventId="snap-2"), "asterisk_plus.channel", "on_agent_channels_snapshot")
        self.assertEqual(result, {"closed": 0})

    def test_fully_booted_closes_channels_older_than_boot(self):
        self.replay_map(enrich(ami_events(CALL_05C, names={"Newchannel"})))
        booted = enrich(ami_events("01-login-fullybooted.txt", names={"FullyBooted"}), start=BASE_TIME + 3600)[0]
        self.assertEqual(booted["Uptime"], "6")
        result = self.deliver(booted, "asterisk_plus.server", "on_fully_booted")
        self.assertEqual(result, {"closed": 1})
        self.assertFalse(self.call_by_uniqueid("1795627331.19").is_active)
        self.assertEqual(self.server.system_name, "pbx-test")

    def test_recording_filename_and_user_events(self):
        self.settings.record_calls = True
        self.assertTrue(self.env.ref("asterisk_plus.var_set_mixmon").is_enabled)
        events = enrich(ami_events("07-mixmonitor-call.txt", names={"Newchannel", "Newstate", "Hangup", "VarSet"}))
        for event in events:
            if event["Event"] == "VarSet":
                if self._condition(self.env.ref("asterisk_plus.var_set_mixmon").condition, event):
                    self.deliver(event, "asterisk_plus.channel", "update_recording_filename")
            else:
                self.replay_handlers([event])
        data = self.env["asterisk_plus.channel_data"].search([("key", "=", "recording_file_path")])
        self.assertEqual(data.value, "/var/spool/asterisk/monitor/test-1795627399.28.wav")
        call = data.call
        self.assertEqual(call.uniqueid, "1795627399.27")
        recording = call.recordings
        self.assertEqual(recording.recording_filename, "test-1795627399.28.wav")
        self.assertEqual(recording.state, "pending")

    def test_user_event_answered(self):
        self.replay_map(enrich(ami_events(CALL_05C, names={"Newchannel"})))
        event = enrich([{"Event": "UserEvent", "UserEvent": "CallAnswered", "Linkedid": "1795627331.19",
                         "Uniqueid": "1795627331.19"}])[0]
        self.assertEqual(self.replay_map([event]), [("UserEvent", "on_user_event_set_answered")])
        call = self.call_by_uniqueid("1795627331.19")
        self.assertEqual(call.status, "answered")
        # 08: a UserEvent the map does not route reaches no handler.
        others = enrich(ami_events("08-userevent.txt", names={"UserEvent"}))
        self.assertEqual(self.replay_map(others), [])

    def test_fagi_route_did(self):
        pbx_bob = self.make_pbx_user(self.bob, "100", ["PJSIP/100", "Local/100@internal"])
        pbx_bob.write({"did_number": "+49 30 555 100", "dial_timeout": 25})
        request = {"agi_network_script": "route_did", "agi_extension": "+4930555100",
                   "agi_uniqueid": "1795627331.19", "AgentEventId": "x"}
        User = self.env["asterisk_plus.user"].with_user(self.agent)
        self.assertEqual(User.fagi_request(request), [
            "PJSIP_DIAL_CONTACTS 100 25,t",
            'EXEC Dial "Local/100@internal,25,t"',
        ])
        pbx_bob.record_calls = True
        self.assertEqual(User.fagi_request(request)[0], "EXEC MixMonitor 1795627331.19.wav,b")
        self.assertEqual(User.fagi_request(dict(request, agi_extension="999")), [])
        with self.assertRaises(AccessError):
            self.env["asterisk_plus.user"].with_user(self.alice).fagi_request(request)
