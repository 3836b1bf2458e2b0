#ifndef CAFFE_BERNOULLI_SAMPLE_LAYER_HPP_
#define CAFFE_BERNOULLI_SAMPLE_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/neuron_layer.hpp"

namespace caffe {

/**
 * @brief Draws independent binary samples: y_i = 1 with probability x_i,
 *        else 0.
 *
 * The stochastic units of Flach, Shekhovtsov & Fikar (2017): the bottom holds
 * Bernoulli probabilities (a Sigmoid output, or an image scaled to [0, 1]),
 * the top one binary sample of every unit. Used for
 *   - Eq. 22: x^{d-1} ~ p(x^{d-1} | x^0), sampled from the forward net and fed
 *     to the reverse net;
 *   - binarising images: pixel intensities in [0, 1] -> Bernoulli pixels, a
 *     fresh sample every time an image passes through the net.
 *
 * Every element is sampled with its own uniform number from Caffe's RNG
 * (Caffe::set_random_seed, i.e. the solver's random_seed, makes the samples
 * reproducible): on the CPU u in [0, 1) and y = [u < x]; on the GPU cuRAND's
 * u in (0, 1] and y = [u <= x]. Either way P(y = 1) = x for x in [0, 1]
 * exactly: x = 0 never gives 1, x = 1 always does. Values outside [0, 1]
 * saturate (x < 0 gives 0, x > 1 gives 1); NaN gives 0. The layer samples
 * in both phases (TRAIN and TEST). In-place use is allowed.
 *
 * The sample is treated as data: no gradient flows through it. Backward sets
 * the bottom diff to zero when asked to propagate (so a shared bottom's other
 * consumers are unaffected); nets should say `propagate_down: false` so
 * that Caffe does not even ask.
 */
template <typename Dtype>
class BernoulliSampleLayer : public NeuronLayer<Dtype> {
 public:
  explicit BernoulliSampleLayer(const LayerParameter& param)
      : NeuronLayer<Dtype>(param) {}
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "BernoulliSample"; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// the uniform numbers of the last forward pass, one per element
  Blob<Dtype> uniform_;
};

}  // namespace caffe

#endif  // CAFFE_BERNOULLI_SAMPLE_LAYER_HPP_
