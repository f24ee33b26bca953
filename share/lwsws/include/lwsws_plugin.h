/*
 * lwsws_plugin.h - WebSocket protocol plugins for lwsws (SPEC section 6.4).
 *
 * The ABI is apache-websocket's (WebSocketPlugin / WebSocketServer), so a
 * plugin written for mod_websocket builds against this header unchanged;
 * lwsws appends functions to the server table after `close`, announced by
 * the table's `size` (check `server->size` before using them if the plugin
 * may also run under mod_websocket).
 *
 * Build (C89 or later):
 *     cc -shared -fPIC -o myplugin.so myplugin.c \
 *        -I /usr/share/lwsws/include -lpthread
 *
 * Loading, in a vhost's "ws-protocols":
 *     { "my-protocol": { "plugin": "/path/myplugin.so", "init": "my_init" } }
 * or put the library in a "plugin-dir" and export lwsws_plugin_protocols
 * (see the end of this file).
 *
 * Threads: lwsws calls a connection's callbacks one at a time, in order,
 * on a thread that may differ from call to call (never on the server's
 * network threads, so a callback may block, at the cost of its own
 * connection only). Callbacks of different connections run concurrently:
 * shared plugin state needs locking.
 *
 * Lifetime of the `const WebSocketServer *server` pointer: valid from
 * on_connect until at least 60 seconds after on_disconnect has returned
 * (or after a declining on_connect has returned). send, close and the
 * room functions may be called from any thread, including the plugin's own
 * threads, until on_disconnect returns; after that they do nothing and
 * return 0. Stop (join) any thread using the pointer in on_disconnect.
 * header_get, header_set and protocol_* work only during on_connect;
 * strings they return stay valid as long as the pointer.
 */
#ifndef LWSWS_PLUGIN_H
#define LWSWS_PLUGIN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef CALLBACK
#define CALLBACK
#endif

/* Message types (on_message's `type`, send's `type`). */
#define MESSAGE_TYPE_INVALID  -1
#define MESSAGE_TYPE_TEXT      0
#define MESSAGE_TYPE_BINARY  128
/* send only: starts the closing handshake; the buffer is an optional
 * 2-byte big-endian close code followed by a UTF-8 reason. */
#define MESSAGE_TYPE_CLOSE   255
/* send only: control frames, at most 125 bytes. */
#define MESSAGE_TYPE_PING    256
#define MESSAGE_TYPE_PONG    257

#define WEBSOCKET_SERVER_VERSION_1 1
#define WEBSOCKET_PLUGIN_VERSION_0 0

struct _WebSocketServer;

/* Opaque; always NULL under lwsws. */
typedef struct request_rec request_rec;
typedef struct _WebSocketState WebSocketState;

/* No Apache request under lwsws: always returns NULL. */
typedef request_rec * (CALLBACK * WS_Request_Get)(const struct _WebSocketServer *server);
/* A request header of the handshake (several values joined by ", "), or
 * NULL. During on_connect only. */
typedef const char * (CALLBACK * WS_Header_Get)(const struct _WebSocketServer *server,
                                                const char *key);
/* Adds a header to the handshake's answer. During on_connect only; the
 * handshake's own headers (Upgrade, Sec-WebSocket-*) cannot be set. */
typedef void (CALLBACK * WS_Header_Set)(const struct _WebSocketServer *server,
                                        const char *key, const char *value);
/* The subprotocols the client offered (Sec-WebSocket-Protocol), in order. */
typedef size_t (CALLBACK * WS_Protocol_Count)(const struct _WebSocketServer *server);
typedef const char * (CALLBACK * WS_Protocol_Index)(const struct _WebSocketServer *server,
                                                    const size_t index);
/* Answers with another of the offered subprotocols (others are ignored). */
typedef void (CALLBACK * WS_Protocol_Set)(const struct _WebSocketServer *server,
                                          const char *protocol);
/* Queues a message; returns buffer_size, or 0 if it was not sent (closed
 * connection, invalid UTF-8 in text, unknown type). Any thread. */
typedef size_t (CALLBACK * WS_Message_Send)(const struct _WebSocketServer *server,
                                            const int type,
                                            const unsigned char *buffer,
                                            const size_t buffer_size);
/* Starts the closing handshake (code 1000) after what is queued. Any thread. */
typedef void (CALLBACK * WS_Close)(const struct _WebSocketServer *server);

/* lwsws additions. Rooms belong to the vhost name and protocol; with
 * ws-broadcast they span every lwsws instance and generation sharing that
 * Redis. A connection leaves its rooms when it ends. Return 0 on success,
 * -1 otherwise. */
typedef int (CALLBACK * WS_Room_Join)(const struct _WebSocketServer *server,
                                      const char *name);
typedef int (CALLBACK * WS_Room_Leave)(const struct _WebSocketServer *server,
                                       const char *name);
/* Sends to every member of the room (the sender too, if a member);
 * returns buffer_size or 0. Text or binary only. */
typedef size_t (CALLBACK * WS_Room_Send)(const struct _WebSocketServer *server,
                                         const char *name, const int type,
                                         const unsigned char *buffer,
                                         const size_t buffer_size);
/* The user authenticated before the upgrade (basic-auth, token), or NULL. */
typedef const char * (CALLBACK * WS_User_Get)(const struct _WebSocketServer *server);
/* A pvo of this protocol's ws-protocols entry, or NULL. */
typedef const char * (CALLBACK * WS_Pvo_Get)(const struct _WebSocketServer *server,
                                             const char *name);

typedef struct _WebSocketServer {
    unsigned int size;      /* sizeof the table as lwsws built it */
    unsigned int version;   /* WEBSOCKET_SERVER_VERSION_1 */
    WebSocketState *state;  /* lwsws's; do not touch */
    WS_Request_Get request;
    WS_Header_Get header_get;
    WS_Header_Set header_set;
    WS_Protocol_Count protocol_count;
    WS_Protocol_Index protocol_index;
    WS_Protocol_Set protocol_set;
    WS_Message_Send send;
    WS_Close close;
    /* lwsws additions */
    WS_Room_Join room_join;
    WS_Room_Leave room_leave;
    WS_Room_Send room_send;
    WS_User_Get user_get;
    WS_Pvo_Get pvo_get;
} WebSocketServer;

/* True if `server` has the lwsws function `field`. */
#define LWSWS_SERVER_HAS(server, field) \
    ((server)->size >= offsetof(WebSocketServer, field) + sizeof((server)->field))

struct _WebSocketPlugin;

/* Accepts the connection by returning a non-NULL private pointer (passed
 * to the other callbacks), or declines it (403) with NULL. Without
 * on_connect every connection is accepted with a NULL private pointer. */
typedef void * (CALLBACK * WS_OnConnect)(const WebSocketServer *server);
/* A complete message (type TEXT or BINARY); `buffer` is the plugin's to
 * use during the call and is followed by a NUL byte. The return value is
 * ignored. Required. */
typedef size_t (CALLBACK * WS_OnMessage)(void *plugin_private,
                                         const WebSocketServer *server,
                                         const int type, unsigned char *buffer,
                                         const size_t buffer_size);
/* The connection ended; called once, after the last on_message. */
typedef void (CALLBACK * WS_OnDisconnect)(void *plugin_private,
                                          const WebSocketServer *server);
/* The server no longer uses the plugin (worker exit). */
typedef void (CALLBACK * WS_Destroy)(struct _WebSocketPlugin *plugin);

typedef struct _WebSocketPlugin {
    unsigned int size;     /* sizeof(WebSocketPlugin) */
    unsigned int version;  /* WEBSOCKET_PLUGIN_VERSION_0 */
    WS_Destroy destroy;            /* may be NULL */
    WS_OnConnect on_connect;       /* may be NULL */
    WS_OnMessage on_message;       /* required */
    WS_OnDisconnect on_disconnect; /* may be NULL */
} WebSocketPlugin;

/* The init function named by the "init" pvo:
 *     WebSocketPlugin *my_init(void);
 * returns a table that stays valid while the library is loaded (a static
 * one is usual). `lwsws --check` and the supervisor's reload validation
 * load the library, call init to check the table and unload the library
 * again, so init must not start threads or allocate anything that must
 * outlive the library: do that in on_connect. Workers load each library
 * once and never unload it. */
typedef WebSocketPlugin * (CALLBACK * WS_Init)(void);

/* plugin-dir libraries export this NULL-terminated array, one element per
 * protocol name:
 *     const LwswsPluginProtocol lwsws_plugin_protocols[] = {
 *         { "my-protocol", my_init },
 *         { NULL, NULL }
 *     };
 */
typedef struct _LwswsPluginProtocol {
    const char *name;
    WS_Init init;
} LwswsPluginProtocol;

#ifdef __cplusplus
}
#endif

#endif /* LWSWS_PLUGIN_H */
