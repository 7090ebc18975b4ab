-- luacheck configuration: `luacheck dissectors` (make lint runs it).
--
-- Wireshark 4.0 runs plugins in Lua 5.2 (4.4 and later in Lua 5.4; the plugin
-- uses what both have, and bit32 or BitOp's "bit" for bitwise operations).
-- WIRESHARK below is every global Wireshark's Lua adds to the standard library,
-- as Wireshark itself reports them: the names of _G in a plugin run by tshark
-- 4.0 (`for k in pairs(_G)`), less Lua 5.2's own and its 5.1 compatibility
-- names (unpack, loadstring, module), which the plugin must not use.

stds.wireshark = {
    read_globals = {
        -- classes and functions
        "Address", "ByteArray", "Column", "Dir", "Dissector", "DissectorTable", "Dumper", "Field", "File",
        "FileHandler", "FrameInfo", "FrameInfoConst", "Int64", "Listener", "NSTime", "Pref", "ProgDlg",
        "Proto", "ProtoExpert", "ProtoField", "PseudoHeader", "Struct", "TextWindow", "TreeItem", "Tvb",
        "TvbRange", "UInt64", "all_field_infos", "apply_filter", "apply_preferences", "base", "bit",
        "browser_open_data_file", "browser_open_url", "copy_to_clipboard", "datafile_path",
        "deregister_filehandler", "dissect_tcp_pdus", "enable_lua", "expert", "file_exists", "format_date",
        "format_time", "frametype", "ftypes", "get_color_filter_slot", "get_filter", "get_preference",
        "get_version", "get_wtap_filetypes", "gui_enabled", "h225_cs_type", "h225_msg_type", "init_routines",
        "new_dialog", "open_capture_file", "persconffile_path", "prefs_changed", "redissect_packets",
        "register_filehandler", "register_menu", "register_postdissector", "register_stat_cmd_arg", "reload",
        "reload_lua_plugins", "reload_packets", "report_failure", "reset_preference", "retap_packets",
        "rex_pcre2", "run_user_scripts_when_superuser", "running_superuser", "set_color_filter_slot",
        "set_filter", "set_plugin_info", "set_preference", "typeof", "wtap", "wtap_comments", "wtap_encaps",
        "wtap_file_type_subtype_description", "wtap_file_type_subtype_name", "wtap_filetypes",
        "wtap_name_to_file_type_subtype", "wtap_pcap_file_type_subtype", "wtap_pcap_nsec_file_type_subtype",
        "wtap_pcapng_file_type_subtype", "wtap_presence_flags", "wtap_rec_types", "wtap_tsprecs",
        -- constants (menus, encodings, expert info, ...)
        "DATA_DIR", "DESEGMENT_ONE_MORE_SEGMENT", "ENC_3GPP_TS_23_038_7BITS",
        "ENC_3GPP_TS_23_038_7BITS_PACKED", "ENC_3GPP_TS_23_038_7BITS_UNPACKED", "ENC_APN_STR", "ENC_ASCII",
        "ENC_ASCII_7BITS", "ENC_BCD_DIGITS_0_9", "ENC_BCD_ODD_NUM_DIG", "ENC_BCD_SKIP_FIRST",
        "ENC_BIG_ENDIAN", "ENC_CHARENCODING_MASK", "ENC_CP437", "ENC_CP855", "ENC_CP866", "ENC_EBCDIC",
        "ENC_EBCDIC_CP037", "ENC_ETSI_TS_102_221_ANNEX_A", "ENC_EUC_KR", "ENC_GB18030", "ENC_ISO_646_BASIC",
        "ENC_ISO_646_IRV", "ENC_ISO_8601_DATE", "ENC_ISO_8601_DATE_TIME", "ENC_ISO_8601_DATE_TIME_BASIC",
        "ENC_ISO_8601_TIME", "ENC_ISO_8859_1", "ENC_ISO_8859_10", "ENC_ISO_8859_11", "ENC_ISO_8859_13",
        "ENC_ISO_8859_14", "ENC_ISO_8859_15", "ENC_ISO_8859_16", "ENC_ISO_8859_2", "ENC_ISO_8859_3",
        "ENC_ISO_8859_4", "ENC_ISO_8859_5", "ENC_ISO_8859_6", "ENC_ISO_8859_7", "ENC_ISO_8859_8",
        "ENC_ISO_8859_9", "ENC_KEYPAD_ABC_TBCD", "ENC_KEYPAD_BC_TBCD", "ENC_LITTLE_ENDIAN", "ENC_MAC_ROMAN",
        "ENC_NA", "ENC_NUM_PREF", "ENC_RFC_1123", "ENC_RFC_822", "ENC_SEP_COLON", "ENC_SEP_DASH",
        "ENC_SEP_DOT", "ENC_SEP_MASK", "ENC_SEP_NONE", "ENC_SEP_SPACE", "ENC_STRING", "ENC_STR_HEX",
        "ENC_STR_MASK", "ENC_STR_NUM", "ENC_STR_TIME_MASK", "ENC_T61", "ENC_TIME_CLASSIC_MAC_OS_SECS",
        "ENC_TIME_MIP6", "ENC_TIME_MSECS", "ENC_TIME_MSEC_NTP", "ENC_TIME_NSECS", "ENC_TIME_NTP",
        "ENC_TIME_NTP_BASE_ZERO", "ENC_TIME_RFC_3971", "ENC_TIME_RTPS", "ENC_TIME_SECS",
        "ENC_TIME_SECS_NSECS", "ENC_TIME_SECS_NTP", "ENC_TIME_SECS_USECS", "ENC_TIME_TIMESPEC",
        "ENC_TIME_TIMEVAL", "ENC_TIME_TOD", "ENC_TIME_USECS", "ENC_UCS_2", "ENC_UCS_4", "ENC_UTF_16",
        "ENC_UTF_8", "ENC_VARINT_PROTOBUF", "ENC_VARINT_QUIC", "ENC_VARINT_ZIGZAG", "ENC_WINDOWS_1250",
        "ENC_WINDOWS_1251", "ENC_WINDOWS_1252", "ENC_ZIGBEE", "GUI_ENABLED", "H225_ALERTING",
        "H225_CALL_PROCEDING", "H225_CONNECT", "H225_CS", "H225_EMPTY", "H225_FACILITY", "H225_INFORMATION",
        "H225_NOTIFY", "H225_OTHER", "H225_OTHERS", "H225_PROGRESS", "H225_RAS", "H225_RELEASE_COMPLET",
        "H225_SETUP", "H225_SETUP_ACK", "H225_STATUS", "H225_STATUS_INQUIRY", "MENU_ANALYZE_CONVERSATION",
        "MENU_ANALYZE_CONVERSATION_FILTER", "MENU_ANALYZE_UNSORTED", "MENU_LOG_ANALYZE_UNSORTED",
        "MENU_LOG_STAT_UNSORTED", "MENU_PACKET_ANALYZE_UNSORTED", "MENU_PACKET_STAT_UNSORTED",
        "MENU_STAT_CONVERSATION", "MENU_STAT_CONVERSATION_LIST", "MENU_STAT_ENDPOINT",
        "MENU_STAT_ENDPOINT_LIST", "MENU_STAT_GENERIC", "MENU_STAT_RESPONSE", "MENU_STAT_RESPONSE_TIME",
        "MENU_STAT_RSERPOOL", "MENU_STAT_TELEPHONY", "MENU_STAT_TELEPHONY_ANSI", "MENU_STAT_TELEPHONY_GSM",
        "MENU_STAT_TELEPHONY_LTE", "MENU_STAT_TELEPHONY_MTP3", "MENU_STAT_TELEPHONY_SCTP",
        "MENU_STAT_UNSORTED", "MENU_TOOLS_UNSORTED", "P2P_DIR_RECV", "P2P_DIR_SENT", "P2P_DIR_UNKNOWN",
        "PI_ASSUMPTION", "PI_CHAT", "PI_CHECKSUM", "PI_COMMENT", "PI_COMMENTS_GROUP", "PI_DEBUG",
        "PI_DECRYPTION", "PI_DEPRECATED", "PI_ERROR", "PI_GROUP_MASK", "PI_MALFORMED", "PI_NOTE",
        "PI_PROTOCOL", "PI_REASSEMBLE", "PI_REQUEST_CODE", "PI_RESPONSE_CODE", "PI_SECURITY", "PI_SEQUENCE",
        "PI_SEVERITY_MASK", "PI_UNDECODED", "PI_WARN", "USER_DIR",
    },
}

std = "lua52+wireshark"
max_line_length = 120

-- The modules osflow.lua loads (dissectors/osflow/*.lua) are run on their own
-- by Wireshark too, as every .lua under the plugins folder: they must only
-- define functions and return them.  Without Wireshark's globals, luacheck
-- fails on a module that would register, add a field or open a window itself.
files["dissectors/osflow/"] = {
    std = "lua52",
    read_globals = { "bit" },   -- BitOp (Wireshark's Lua 5.4 builds have no bit32)
}
