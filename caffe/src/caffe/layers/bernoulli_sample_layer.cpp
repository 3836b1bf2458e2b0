#include <cmath>
#include <vector>

#include "caffe/layers/bernoulli_sample_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void BernoulliSampleLayer<Dtype>::Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top) {
  NeuronLayer<Dtype>::Reshape(bottom, top);
  uniform_.ReshapeLike(*bottom[0]);
}

template <typename Dtype>
void BernoulliSampleLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  Dtype* uniform = uniform_.mutable_cpu_data();
  // caffe_rng_uniform(n, a, b) draws from [a, nextafter(b)); asking for
  // b = the largest value below 1 gives u in [0, 1), so [u < x] is 1 with
  // probability exactly x, and always 1 for x = 1.
  caffe_rng_uniform<Dtype>(count, Dtype(0),
      std::nextafter(Dtype(1), Dtype(0)), uniform);
  const Dtype* prob = bottom[0]->cpu_data();
  Dtype* sample = top[0]->mutable_cpu_data();
  for (int i = 0; i < count; ++i) {
    sample[i] = uniform[i] < prob[i] ? Dtype(1) : Dtype(0);
  }
}

template <typename Dtype>
void BernoulliSampleLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  // A sample is data: d(sample)/d(probability) is taken as zero.
  if (propagate_down[0]) {
    caffe_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_cpu_diff());
  }
}

#ifdef CPU_ONLY
STUB_GPU(BernoulliSampleLayer);
#endif

INSTANTIATE_CLASS(BernoulliSampleLayer);
REGISTER_LAYER_CLASS(BernoulliSample);

}  // namespace caffe
