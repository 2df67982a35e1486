/* athena-ollama-sim: flags, wiring and signals of the stand-in Ollama server. */
#include "am_config.h"
#include "am_error.h"
#include "am_log.h"
#include "fault.h"
#include "gen.h"
#include "models.h"
#include "server.h"

#include <math.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#define PROGRAM "athena-ollama-sim"

static const char *listen_addr;
static const char *models_list;
static long long tokens_per_second;
static long long ttft_ms;
static long long answer_tokens;
static const char *fail_rate_text;
static const char *fail_modes_text;
static long long fail_after_tokens;
static long long stall_ms;
static long long seed;
static long long threads;
static long long max_conns;
static long long max_body_kib;
static long long timeout_s;

static const struct am_setting settings[] = {
    {"listen", "LISTEN_ADDR", AM_SET_STRING, "127.0.0.1:11434", 0, 0,
     "host:port to serve Ollama's API on", &listen_addr},
    {"models", "SIM_MODELS", AM_SET_STRING, "phi3:mini,llama3.1:8b,mistral:7b", 0, 0,
     "comma-separated models it claims to have; others get 404", &models_list},
    {"tokens-per-second", "SIM_TOKENS_PER_SECOND", AM_SET_INT, "50", 1, SIM_MAX_TOKENS_PER_S,
     "token rate of every answer (header X-Sim-Tokens-Per-Second)", &tokens_per_second},
    {"ttft-ms", "SIM_TTFT_MS", AM_SET_INT, "100", 0, SIM_MAX_TTFT_MS,
     "time to first token (header X-Sim-TTFT-Ms)", &ttft_ms},
    {"answer-tokens", "SIM_ANSWER_TOKENS", AM_SET_INT, "40", 0, SIM_MAX_ANSWER_TOKENS,
     "answer length in tokens, capped by options.num_predict (header X-Sim-Answer-Tokens)",
     &answer_tokens},
    {"fail-rate", "SIM_FAIL_RATE", AM_SET_STRING, "0", 0, 0,
     "share of chat/generate requests given a random fault, 0..1", &fail_rate_text},
    {"fail-modes", "SIM_FAIL_MODES", AM_SET_STRING, "http_500", 0, 0,
     "faults SIM_FAIL_RATE picks from: http_500, error_line, disconnect, slow (header X-Sim-Fail)",
     &fail_modes_text},
    {"fail-after-tokens", "SIM_FAIL_AFTER_TOKENS", AM_SET_INT, "3", 0, SIM_MAX_ANSWER_TOKENS,
     "tokens sent before error_line, disconnect or slow strikes (header X-Sim-Fail-After-Tokens)",
     &fail_after_tokens},
    {"stall-ms", "SIM_STALL_MS", AM_SET_INT, "30000", 0, SIM_MAX_STALL_MS,
     "pause of the slow fault (header X-Sim-Stall-Ms)", &stall_ms},
    {"seed", "SIM_SEED", AM_SET_INT, "0", 0, 0x7fffffffffffffffLL,
     "seed of the answers (options.seed overrides) and of SIM_FAIL_RATE", &seed},
    {"threads", "SIM_HTTP_THREADS", AM_SET_INT, "2", 1, 256, "HTTP worker threads", &threads},
    {"max-connections", "SIM_MAX_CONNECTIONS", AM_SET_INT, "1024", 1, 100000,
     "connections at once; more are refused when accepted", &max_conns},
    {"max-body-kib", "SIM_MAX_BODY_KIB", AM_SET_INT, "1024", 1, 65536,
     "largest request body; larger ones get 413", &max_body_kib},
    {"http-timeout-s", "SIM_HTTP_TIMEOUT_S", AM_SET_INT, "30", 1, 3600,
     "idle connections are closed after this many seconds", &timeout_s},
};

static void bad_setting(const char *what, const char *why)
{
    fprintf(stderr, "%s: %s: %s\n", PROGRAM, what, why);
    exit(2);
}

int main(int argc, char **argv)
{
    sim_models *models = NULL;
    sim_server *server = NULL;
    struct sim_server_config cfg = {0};
    char err[512], why[600];
    sigset_t set;
    int sig;

    am_config_load(settings, sizeof settings / sizeof settings[0], argc, argv, PROGRAM,
                   "A stand-in Ollama server: /api/chat, /api/generate, /api/tags, /api/version "
                   "and /,\nanswering with deterministic text at a set time to first token and "
                   "token rate,\nwith faults on request. See docs/OLLAMA-SIM.md.");

    char *end = NULL;
    cfg.fail_rate = strtod(fail_rate_text, &end);
    if (end == fail_rate_text || *end != '\0' || !isfinite(cfg.fail_rate) || cfg.fail_rate < 0 ||
        cfg.fail_rate > 1) {
        snprintf(why, sizeof why, "'%s' is not a number from 0 to 1", fail_rate_text);
        bad_setting("SIM_FAIL_RATE/--fail-rate", why);
    }
    cfg.nfail_modes = sim_fault_parse_list(fail_modes_text, cfg.fail_modes, SIM_FAULT_COUNT);
    if (cfg.nfail_modes == 0) {
        snprintf(why, sizeof why, "'%s' is not a list of http_500, error_line, disconnect, slow",
                 fail_modes_text);
        bad_setting("SIM_FAIL_MODES/--fail-modes", why);
    }
    if (sim_models_parse(models_list, &models, err, sizeof err))
        bad_setting("SIM_MODELS/--models", err);
    struct sockaddr_in sin;
    if (sim_server_parse_addr(listen_addr, &sin)) {
        snprintf(why, sizeof why, "'%s' is not host:port with an IPv4 host", listen_addr);
        bad_setting("LISTEN_ADDR/--listen", why);
    }

    cfg.listen_addr = listen_addr;
    cfg.models = models;
    cfg.defaults = (struct sim_plan){
        .tokens_per_second = tokens_per_second,
        .ttft_ms = ttft_ms,
        .answer_tokens = answer_tokens,
        .fault = SIM_FAULT_NONE,
        .fail_after_tokens = fail_after_tokens,
        .stall_ms = stall_ms,
        .seed = seed,
    };
    cfg.threads = (unsigned)threads;
    cfg.max_conns = (unsigned)max_conns;
    cfg.timeout_s = (unsigned)timeout_s;
    cfg.max_body = (size_t)max_body_kib << 10;

    /* Signals are taken by sigwait below; the server threads inherit the mask. */
    am_signals_block(&set);

    if (sim_server_start(&server, &cfg) != AM_OK) {
        sim_models_free(models);
        snprintf(why, sizeof why, "cannot listen on %s (in use, or not permitted)", listen_addr);
        bad_setting("LISTEN_ADDR/--listen", why);
    }
    am_log_info("%s %s listening on %s: %zu models, %lld tokens/s, ttft %lld ms, %lld tokens, "
                "fail rate %g",
                PROGRAM, AM_VERSION, listen_addr, sim_models_count(models), tokens_per_second,
                ttft_ms, answer_tokens, cfg.fail_rate);
    sigwait(&set, &sig);
    am_log_info("stopping on signal %d", sig);
    sim_server_stop(server);
    sim_models_free(models);
    return 0;
}
