/* libasound prints its errors to stderr itself ("ALSA lib confmisc.c:855:(parse_card) cannot
 * find card '0'", about eight lines per failed open), which breaks `--log-json` and floods the
 * journal while a sound card is missing. mpdr reports every failure through cpal's errors
 * (one log line, with the likely cause), so libasound's handler is replaced at start-up by one
 * that drops them. build.rs links this object into every binary (a constructor: no Rust call,
 * hence no unsafe code). MPDR_ALSA_DEBUG=1 keeps libasound's messages. */
#include <stdlib.h>

typedef void (*mpdr_snd_lib_error_handler_t)(const char *file, int line, const char *function, int err,
                                             const char *fmt, ...);
extern int snd_lib_error_set_handler(mpdr_snd_lib_error_handler_t handler);

static void mpdr_alsa_quiet_handler(const char *file, int line, const char *function, int err, const char *fmt, ...) {
    (void)file;
    (void)line;
    (void)function;
    (void)err;
    (void)fmt;
}

__attribute__((constructor)) static void mpdr_alsa_quiet(void) {
    const char *debug = getenv("MPDR_ALSA_DEBUG");
    if (debug == NULL || debug[0] != '1') snd_lib_error_set_handler(mpdr_alsa_quiet_handler);
}
