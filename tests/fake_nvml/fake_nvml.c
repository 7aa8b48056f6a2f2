/* A fake libnvidia-ml.so.1 for tests on machines without an NVIDIA GPU.
 *
 * It exports the NVML functions rqa_otel.resources.gpu calls through pynvml,
 * with NVML's real signatures and return codes, so pynvml's own ctypes code
 * runs unchanged. Built by tests/fake_nvml/__init__.py with gcc:
 *   -DFAKE_NVML_NO_V3           no nvmlDeviceGetComputeRunningProcesses_v3 (a 470 driver)
 *   -DFAKE_NVML_NO_V3 -DFAKE_NVML_NO_V2   only the unversioned v1 call (older drivers)
 *
 * Read at nvmlInitWithFlags:
 *   FAKE_NVML_SCENARIO   normal | not_supported | gpu_lost | no_gpu | driver_not_loaded
 *   FAKE_NVML_PROCESSES  "gpu:pid:bytes,gpu:pid:bytes" compute processes
 *   FAKE_NVML_INIT_DELAY_MS  nvmlInit takes this long (as without the persistence daemon)
 * Read at every call:
 *   FAKE_NVML_LOST_FILE  while this file exists GPU 1 answers NVML_ERROR_GPU_IS_LOST
 *                        (every GPU when the file holds "all")
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3,
    NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9,
    NVML_ERROR_GPU_IS_LOST = 15,
};

#define DEVICES 2
#define MAX_PROCESSES 64

typedef struct device { unsigned int index; } *nvmlDevice_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId; } nvmlProcessInfo_v2_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; } nvmlProcessInfo_v1_t;

static struct device devices[DEVICES] = {{0}, {1}};
static int initialized = 0;
static char scenario[32] = "normal";
static struct { unsigned int gpu, pid; unsigned long long bytes; } processes[MAX_PROCESSES];
static unsigned int process_count = 0;

static const unsigned long long GiB = 1024ULL * 1024ULL * 1024ULL;

static int is(const char *name) { return strcmp(scenario, name) == 0; }

static void load_processes(void) {
    process_count = 0;
    const char *text = getenv("FAKE_NVML_PROCESSES");
    while (text && *text && process_count < MAX_PROCESSES) {
        unsigned int gpu, pid;
        unsigned long long bytes;
        if (sscanf(text, "%u:%u:%llu", &gpu, &pid, &bytes) == 3) {
            processes[process_count].gpu = gpu;
            processes[process_count].pid = pid;
            processes[process_count].bytes = bytes;
            process_count++;
        }
        text = strchr(text, ',');
        if (text) text++;
    }
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    const char *delay = getenv("FAKE_NVML_INIT_DELAY_MS");
    if (delay && *delay) usleep((useconds_t)atoi(delay) * 1000);
    const char *chosen = getenv("FAKE_NVML_SCENARIO");
    snprintf(scenario, sizeof scenario, "%s", chosen && *chosen ? chosen : "normal");
    if (is("driver_not_loaded")) return NVML_ERROR_DRIVER_NOT_LOADED;
    load_processes();
    initialized = 1;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }

nvmlReturn_t nvmlShutdown(void) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    initialized = 0;
    return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result) {
    switch (result) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    *count = is("no_gpu") ? 0 : DEVICES;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (index >= DEVICES || is("no_gpu")) return NVML_ERROR_INVALID_ARGUMENT;
    *device = &devices[index];
    return NVML_SUCCESS;
}

/* 0: no GPU lost; 1: GPU 1 lost; 2: every GPU lost. */
static int lost_level(void) {
    if (is("gpu_lost")) return 1;
    const char *lost_file = getenv("FAKE_NVML_LOST_FILE");
    if (!lost_file || !*lost_file) return 0;
    FILE *file = fopen(lost_file, "r");
    if (!file) return 0;
    char text[8] = "";
    if (!fgets(text, sizeof text, file)) text[0] = 0;
    fclose(file);
    return strncmp(text, "all", 3) == 0 ? 2 : 1;
}

/* Every per-device query starts here: initialized, a known handle, not lost. */
static nvmlReturn_t check(nvmlDevice_t device) {
    if (!initialized) return NVML_ERROR_UNINITIALIZED;
    if (device != &devices[0] && device != &devices[1]) return NVML_ERROR_INVALID_ARGUMENT;
    int lost = lost_level();
    if (lost == 2 || (lost == 1 && device->index == 1)) return NVML_ERROR_GPU_IS_LOST;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS) return result;
    if (length < 48) return NVML_ERROR_INSUFFICIENT_SIZE;
    snprintf(uuid, length, "GPU-fa4e0000-0000-0000-0000-00000000000%u", device->index);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS) return result;
    snprintf(name, length, "Fake NVIDIA T%u", device->index);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS) return result;
    if (is("not_supported")) return NVML_ERROR_NOT_SUPPORTED;
    utilization->gpu = device->index == 0 ? 37 : 90;
    utilization->memory = 12;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS) return result;
    memory->total = (device->index == 0 ? 16 : 24) * GiB;
    memory->used = 0;
    for (unsigned int i = 0; i < process_count; i++)
        if (processes[i].gpu == device->index) memory->used += processes[i].bytes;
    memory->used += GiB / 4; /* the driver's own reservation */
    memory->free = memory->total - memory->used;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensor, unsigned int *temperature) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS) return result;
    if (sensor != 0) return NVML_ERROR_INVALID_ARGUMENT; /* NVML_TEMPERATURE_GPU */
    if (is("not_supported")) return NVML_ERROR_NOT_SUPPORTED;
    *temperature = device->index == 0 ? 54 : 71;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *milliwatts) {
    nvmlReturn_t result = check(device);
    if (result != NVML_SUCCESS) return result;
    if (is("not_supported")) return NVML_ERROR_NOT_SUPPORTED;
    *milliwatts = device->index == 0 ? 65250 : 180000;
    return NVML_SUCCESS;
}

/* NVML's two-call protocol: a NULL array (or one too small) answers
 * INSUFFICIENT_SIZE with the needed count; no processes answers SUCCESS. */
#define RUNNING_PROCESSES(NAME, RECORD, FILL)                                        \
    nvmlReturn_t NAME(nvmlDevice_t device, unsigned int *count, RECORD *infos) {    \
        nvmlReturn_t result = check(device);                                         \
        if (result != NVML_SUCCESS) return result;                                   \
        unsigned int found = 0;                                                      \
        for (unsigned int i = 0; i < process_count; i++)                             \
            if (processes[i].gpu == device->index) found++;                          \
        if (found == 0) { *count = 0; return NVML_SUCCESS; }                         \
        if (infos == NULL || *count < found) { *count = found; return NVML_ERROR_INSUFFICIENT_SIZE; } \
        unsigned int n = 0;                                                          \
        for (unsigned int i = 0; i < process_count; i++) {                           \
            if (processes[i].gpu != device->index) continue;                         \
            memset(&infos[n], 0, sizeof infos[n]);                                   \
            infos[n].pid = processes[i].pid;                                         \
            infos[n].usedGpuMemory = processes[i].bytes;                             \
            FILL;                                                                    \
            n++;                                                                     \
        }                                                                            \
        *count = n;                                                                  \
        return NVML_SUCCESS;                                                         \
    }

#ifndef FAKE_NVML_NO_V3
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses_v3, nvmlProcessInfo_v2_t, infos[n].gpuInstanceId = 0xFFFFFFFF)
#endif
#ifndef FAKE_NVML_NO_V2
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses_v2, nvmlProcessInfo_v2_t, infos[n].gpuInstanceId = 0xFFFFFFFF)
#endif
RUNNING_PROCESSES(nvmlDeviceGetComputeRunningProcesses, nvmlProcessInfo_v1_t, (void)0)
