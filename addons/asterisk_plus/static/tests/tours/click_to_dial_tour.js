/** @odoo-module **/
// Click-to-dial from a partner's phone field, the incoming-call popup with its
// partner link, and the live reload of the active calls list.
// Odoo 17 disables the websocket in test mode, so the bus payloads are handed
// to the asterisk_plus service's handlers directly.

import { registry } from "@web/core/registry";
import { jsonrpc } from "@web/core/network/rpc_service";

function pbx() {
    return odoo.__WOWL_DEBUG__.root.env.services.asterisk_plus;
}

registry.category("web_tour.tours").add("asterisk_plus_click_to_dial", {
    test: true,
    steps: () => [
        {
            content: "The phone field shows the dial button to PBX users",
            trigger: ".o_form_view .o_field_widget[name='phone'] .o_asterisk_plus_dial",
            run: "click",
        },
        {
            content: "The user is told the phone rings first",
            trigger: ".o_notification:contains('Calling')",
            isCheck: true,
        },
        {
            content: "An incoming-call popup as the server sends it",
            trigger: ".o_form_view",
            run: async () => {
                const [partner] = await jsonrpc("/web/dataset/call_kw/res.partner/search_read", {
                    model: "res.partner",
                    method: "search_read",
                    args: [[["name", "=", "Customer GmbH"]], ["id"]],
                    kwargs: {},
                });
                pbx().onNotify({
                    title: "Incoming call",
                    message: "Customer GmbH +4930901820",
                    sticky: true,
                    warning: false,
                    number: "+4930901820",
                    partner_id: partner.id,
                    partner_name: "Customer GmbH",
                });
            },
        },
        {
            content: "The popup links to the caller",
            trigger: ".o_notification:contains('Customer GmbH +4930901820') .o_notification_buttons button:contains('Customer GmbH')",
            run: "click",
        },
        {
            content: "Open the active calls",
            trigger: ".o_form_view .o_field_widget[name='name']",
            run: () => {
                window.location.hash = "#action=asterisk_plus.action_active_calls";
            },
        },
        {
            content: "One active call: the click-to-dial one",
            trigger: ".o_list_view .o_data_row:nth-child(1)",
            run: async () => {
                if (document.querySelectorAll(".o_list_view .o_data_row").length !== 1) {
                    throw new Error("expected one active call");
                }
                // A second call starts elsewhere; the PBX tells the client to reload.
                await jsonrpc("/web/dataset/call_kw/asterisk_plus.server/originate_call", {
                    model: "asterisk_plus.server",
                    method: "originate_call",
                    args: ["+4930901899", false, false],
                    kwargs: {},
                });
                pbx().onReloadView({ model: "asterisk_plus.call" });
            },
        },
        {
            content: "The list reloaded by itself",
            trigger: ".o_list_view .o_data_row:nth-child(2)",
            isCheck: true,
        },
    ],
});

function visit(title, hash, trigger) {
    return [
        {
            content: `open ${title}`,
            trigger: "body",
            run: () => {
                window.location.hash = hash;
            },
        },
        // The breadcrumb proves the new action replaced the previous one.
        { content: `${title} is loaded`, trigger: `.o_breadcrumb:contains('${title}')`, isCheck: true },
        { content: `${title} is shown`, trigger, isCheck: true },
    ];
}

registry.category("web_tour.tours").add("asterisk_plus_menus", {
    test: true,
    steps: () => [
        { trigger: ".o_main_navbar", isCheck: true },
        ...visit("Call history", "#action=asterisk_plus.action_call_history", ".o_list_view .o_data_row"),
        {
            content: "open a call",
            trigger: ".o_list_view .o_data_row .o_data_cell",
            run: "click",
        },
        { content: "the call form", trigger: ".o_form_view .o_field_widget[name='display_label']", isCheck: true },
        ...visit("Active calls", "#action=asterisk_plus.action_active_calls", ".o_list_view"),
        ...visit("Channels", "#action=asterisk_plus.action_channels", ".o_list_view"),
        ...visit("PBX users", "#action=asterisk_plus.action_pbx_users", ".o_list_view .o_data_row"),
        {
            content: "open a PBX user",
            trigger: ".o_list_view .o_data_row .o_data_cell",
            run: "click",
        },
        { content: "the PBX user form", trigger: ".o_form_view .o_field_widget[name='channels']", isCheck: true },
        ...visit("Servers", "#action=asterisk_plus.action_servers", ".o_list_view .o_data_row"),
        {
            content: "open a server",
            trigger: ".o_list_view .o_data_row .o_data_cell",
            run: "click",
        },
        { content: "the server form", trigger: ".o_form_view .o_field_widget[name='agent_url']", isCheck: true },
        ...visit("Events map", "#action=asterisk_plus.action_events", ".o_list_view .o_data_row"),
        ...visit("PBX Settings", "#action=asterisk_plus.action_settings", ".o_form_view .o_field_widget[name='originate_context']"),
        ...visit("Recordings", "#action=asterisk_plus.action_recordings", ".o_list_view"),
        ...visit("Access lists", "#action=asterisk_plus.action_access_lists", ".o_list_view"),
        ...visit("Bans", "#action=asterisk_plus.action_access_bans", ".o_list_view"),
    ],
});
