#ifndef XL_DETECT_THREADS_H
#define XL_DETECT_THREADS_H

#ifdef __cplusplus
extern "C" {
#endif

// xl_set_num_threads sets the threads OpenCV's parallel loops (the DNN
// module's among them) use, process-wide; 0 or less restores the default.
void xl_set_num_threads(int n);

// xl_get_num_threads returns the threads OpenCV's parallel loops use.
int xl_get_num_threads(void);

#ifdef __cplusplus
}
#endif

#endif
