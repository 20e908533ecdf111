"""The AUTOMATIC1111-compatible API (`/sdapi/v1/...`): A1111's request and response shapes over farm jobs.

A txt2img or img2img request becomes one farm job (batch_size x n_iter images), so it is rendered
by every worker of its model at once; the request waits for the job and answers as A1111 does.
"""
